"""The search for the perturbation scale (σ′ or α′) at which training accuracy drops by a
target amount, with sequential Monte Carlo stopping.

What σ′ means (the study's definition, kept): the drop is D(s) = acc(w) − E[acc(w + u_s)], the
clean training accuracy minus the expected accuracy under the perturbation of scale s, the
expectation over the perturbation and uniformly over the training examples. σ′ is an s with
|D(s) − target| < tolerance (the reference's acceptance rule). The reference finds it by
bisection on [0, 2]; gengap finds the same kind of s in fewer probes (:func:`search_scale`):

1. a cheap bracket: *screens* (one small Monte Carlo round, a few hundred examples) at
   ``search_upper``, ``search_upper``/4, /16, … until a screen no longer shows a drop clearly
   above the target; a screen that settles "too large" is an upper end of the bracket, one
   that settles "too small" (σ′ only) a lower end;
2. full probes (sequential Monte Carlo, below) inside the bracket: at the point where a power
   law D ∝ s^k through the two bracket ends crosses the target when both ends' drops are
   informative (above 0, at most 3× the target); where a logistic curve in log s through both
   ends does when only the lower end is (the upper one near saturation: α′'s worst-case
   drop rises from 0.02 to 0.8 within a factor 2.5 of α); where D ∝ s² through the upper end
   does when only it is; kept within the middle 70 % of the bracket in log s; else at the
   bracket's midpoint in log s (bisection), and at the midpoint as well when the same end
   moved twice in a row (Illinois rule); with one end only, where D ∝ s² through it crosses
   the target. The
   first accepted probe is the answer; at most ``search_depth`` full probes, after which the
   last one is returned, as in the reference.

A screen only moves the bracket; every returned value passed a full probe's acceptance test (or
is the last probe), so the statistical meaning is the bisection's: D(σ′) within the tolerance
of the target, estimated as below. With a monotone D both find the same σ′ up to that band.

How D(s) is estimated: in rounds. A round draws ``mc_draws`` perturbations, each applied to its
own ``mc_chunk`` training examples drawn uniformly (paired with the clean model's answers on
the same examples); every (perturbation, examples) pair is one independent unbiased estimate of
D(s). After each round a Student-t interval (level ``confidence``) over these estimates decides:
inside [target − tolerance, target + tolerance]: accept; entirely above or below the target:
move the bracket; otherwise sample another round, up to ``mc_max_rounds``, after which the
point estimate decides as in the reference (|D − target| < tolerance accepts). Far from σ′ one
round decides, and the first round of a probe is a screen with a quarter of the examples.
With the defaults a probe that needs every round has averaged 50 perturbations over 5,440
examples: a smaller standard error than the reference's 10 perturbations over the whole
training set whenever one perturbation's accuracy varies by more than about 0.013 (the
reference's estimate, on 10 draws, has no smaller error than that draw-to-draw spread / √10).

When the clean training accuracy minus 1/classes is below the target drop, no scale can reach
it and the search returns NaN instead of probing (an untrained network has no σ′). The
magnitude-aware searches perturb by ε even at scale 0; when that alone drops the accuracy by at
least the target, they return 0 (found by one screen or probe at 0, see :func:`search_scale`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from scipy import stats

from gengap.specs import MeasureOptions


@dataclass(frozen=True)
class Probe:
    """One probed scale: the estimated drop, its interval half-width, the examples used."""

    scale: float
    drop: float
    half_width: float
    examples: int
    verdict: str  # accept | lower (the drop is too large) | raise


@dataclass
class SearchResult:
    """The scale found (``value``), the drop estimated there, and every probe."""

    value: float
    drop: float
    half_width: float
    probes: list[Probe] = field(default_factory=list)
    no_value: str = ""  # why there is no scale (value NaN) when no probe could find one

    @property
    def examples(self) -> int:
        """Training examples forwarded by the whole search (perturbed copies)."""
        return sum(p.examples for p in self.probes)


Round = Callable[[int], torch.Tensor]  # examples per draw -> one unbiased drop per draw


def estimate_drop(sample_round: Round, opts: MeasureOptions, scale: float,
                  screen_only: bool = False) -> Probe:
    """Sample rounds until an interval decides (see the module docstring). The first round is
    a cheap screen (a quarter of ``mc_chunk`` examples per draw) that settles probes far from
    the target; ``screen_only`` stops after it with verdict ``undecided`` unless it settled."""
    values: list[torch.Tensor] = []
    low, high = opts.deviation - opts.tolerance, opts.deviation + opts.tolerance
    chunks = [max(1, opts.mc_chunk // 4)] + [opts.mc_chunk] * (0 if screen_only
                                                               else opts.mc_max_rounds)
    used = 0
    for chunk in chunks:
        values.append(sample_round(chunk).double().cpu())
        used += len(values[-1]) * chunk
        pooled = torch.cat(values)
        mean = float(pooled.mean())
        n = len(pooled)
        se = float(pooled.std()) / math.sqrt(n) if n > 1 else math.inf
        half = float(stats.t.ppf(0.5 + opts.confidence / 2, max(n - 1, 1))) * se
        if low <= mean - half and mean + half <= high:
            return Probe(scale, mean, half, used, "accept")
        if mean - half > opts.deviation:
            return Probe(scale, mean, half, used, "lower")
        if mean + half < opts.deviation:
            return Probe(scale, mean, half, used, "raise")
    if screen_only:
        return Probe(scale, mean, half, used, "undecided")
    if abs(mean - opts.deviation) < opts.tolerance:
        verdict = "accept"
    else:
        verdict = "lower" if mean > opts.deviation else "raise"
    return Probe(scale, mean, half, used, verdict)


def unreachable(clean_correct: torch.Tensor, num_classes: int,
                opts: MeasureOptions) -> SearchResult | None:
    """A NaN result when no perturbation can lower the accuracy by ``opts.deviation``: a
    heavily perturbed network guesses at about 1/classes, so the drop stays below clean
    accuracy − 1/classes (a network that has not learned its training set has no σ′)."""
    accuracy = float(clean_correct.float().mean())
    if accuracy - 1.0 / num_classes >= opts.deviation:
        return None
    return SearchResult(math.nan, math.nan, math.nan, [], no_value=(
        f"training accuracy minus chance (1/classes) is below the target drop "
        f"{opts.deviation:g}: no perturbation lowers it that much"))


def inverse_square(scale: float) -> float:
    """1/s², infinite at s = 0 (a magnitude-aware search that ended at 0), NaN stays NaN."""
    return math.inf if scale == 0 else 1.0 / scale**2


Screen = Callable[[float], Probe]
SCREENS = 12  # most screens of the bracketing pass (a factor 4 each: 4¹² ≈ 1.7e7)


def search_scale(probe: Callable[[float], Probe], opts: MeasureOptions,
                 screen: Screen | None = None, floor: bool = False) -> SearchResult:
    """Find the scale whose drop is within ``opts.tolerance`` of ``opts.deviation`` (module
    docstring). ``probe(s)`` is a full probe; ``screen(s)``, when given, a cheap one whose
    verdict "lower" (and "raise", if it gives it) is trusted to move the bracket and any other
    verdict ends the bracketing pass. With ``floor`` the perturbation at scale 0 is not the
    clean network (the magnitude-aware searches' ε): when a screen or a full probe first drops
    too much, scale 0 is screened (or, after a full probe, probed) once, and if it too drops at
    least the target the result is 0 (no positive scale can do better) instead of a descent to
    the last probe."""
    probes: list[Probe] = []
    target = opts.deviation
    lo: Probe | None = None  # largest scale known to drop too little
    hi: Probe | None = None  # smallest scale known to drop too much
    scale = opts.search_upper
    if screen is not None:
        for _ in range(SCREENS):
            found = screen(scale)
            probes.append(found)
            if found.verdict == "lower" and floor and hi is None:
                # does the ε-wide perturbation at scale 0 already drop too much? Then no
                # scale does better, and the screens need not descend towards 0 to see it
                bottom = screen(0.0)
                probes.append(bottom)
                if bottom.verdict in ("lower", "accept"):
                    return SearchResult(0.0, bottom.drop, bottom.half_width, probes)
                floor = bottom.verdict != "raise"  # a full probe may still look at 0
            if found.verdict == "lower":
                hi, scale = found, scale / 4
                if lo is not None:  # came up from below: the bracket is closed
                    break
            elif found.verdict == "raise" and hi is None:
                lo, scale = found, scale * 4
            else:
                if found.verdict == "raise":
                    lo = found
                break
        if lo is not None and hi is not None:
            scale = _next_scale(lo, hi, target, 0.5 if lo.drop <= 0 else None)
    full = 0
    moved: list[str] = []
    last: Probe | None = None
    while full < opts.search_depth:
        last = probe(scale)
        probes.append(last)
        full += 1
        if last.verdict == "accept":
            break
        if last.verdict == "lower":
            hi = last
            if floor and lo is None:
                floor, bottom = False, probe(0.0)
                probes.append(bottom)
                full += 1
                if bottom.verdict != "raise":
                    return SearchResult(0.0, bottom.drop, bottom.half_width, probes)
                lo = bottom
        else:
            lo = last
        moved.append(last.verdict)
        if hi is None:  # nothing drops enough yet: widen upwards
            scale = _widen(last, target)
            continue
        stuck = len(moved) >= 2 and moved[-1] == moved[-2]  # Illinois: the same end twice
        scale = _next_scale(lo, hi, target, 0.5 if stuck else None)
    assert last is not None
    return SearchResult(last.scale, last.drop, last.half_width, probes)


def _next_scale(lo: Probe | None, hi: Probe, target: float,
                fraction: float | None = None) -> float:
    """The next full probe inside (lo, hi) (module docstring); ``fraction`` forces a point
    of the bracket in log s. With no lower end: where D ∝ s² through the upper end reaches
    the target, between hi/16 and hi/1.25."""
    if lo is None or lo.scale <= 0:
        if hi.drop > 0:
            guess = hi.scale * math.sqrt(target / hi.drop)
        else:
            guess = hi.scale / 4
        return min(max(guess, hi.scale / 16), hi.scale / 1.25)
    log_lo, log_hi = math.log(lo.scale), math.log(hi.scale)
    # interpolate only between informative ends (a drop of 0, or far above the target, says
    # little about where the target is crossed): otherwise bisect in log s
    lo_ok, hi_ok = 0 < lo.drop < target, target < hi.drop <= 3 * target
    if fraction is None and (lo_ok or hi_ok):
        if lo_ok and hi_ok:
            guess = log_lo + (math.log(target) - math.log(lo.drop)) * (log_hi - log_lo) / (
                math.log(hi.drop) - math.log(lo.drop))
        elif lo_ok:  # the upper end near saturation: a logistic curve in log s through both
            guess = log_lo + (_logit(target) - _logit(lo.drop)) * (log_hi - log_lo) / (
                _logit(hi.drop) - _logit(lo.drop))
        else:  # a lower end without a drop: the law D ∝ s² through the upper one
            guess = math.log(hi.scale) + 0.5 * (math.log(target) - math.log(hi.drop))
        fraction = min(max((guess - log_lo) / (log_hi - log_lo), 0.15), 0.85)
    return math.exp(log_lo + (0.5 if fraction is None else fraction) * (log_hi - log_lo))


def _logit(drop: float) -> float:
    """log(D/(1 − D)), D kept within [0.001, 0.999] (a drop is at most 1)."""
    drop = min(max(drop, 1e-3), 1 - 1e-3)
    return math.log(drop / (1 - drop))


def _widen(lo: Probe, target: float) -> float:
    """The next scale above ``lo`` when nothing drops enough yet: where D ∝ s² through it
    reaches the target, between 1.25 and 4 times it."""
    if lo.drop > 0:
        return lo.scale * min(max(math.sqrt(target / lo.drop), 1.25), 4.0)
    return lo.scale * 4
