"""σ′ and α′ on linear models where the accuracy drop has a closed form, the bounds built on
them, and the scale search itself (with and without its bracketing screens)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import norm
from torch import nn

from gengap.measures import MeasureContext, compute
from gengap.measures.search import Probe, search_scale
from gengap.specs import MeasureOptions


def linear(weight: np.ndarray, bias: np.ndarray | None = None) -> nn.Linear:
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(weight))
        if bias is not None:
            layer.bias.copy_(torch.from_numpy(bias))
    return layer


@pytest.fixture(scope="module")
def gaussian_case():
    """Two classes, labels from the model itself (clean accuracy 1)."""
    rng = np.random.default_rng(0)
    w = rng.normal(size=(2, 5)).astype(np.float32)
    x = rng.normal(size=(3000, 5)).astype(np.float32)
    y = (x @ w.T).argmax(1)
    return w, x, y


def drop_under_noise(w, x, y, std) -> float:
    """1 − mean_i Φ(μ_i / s_i): with u_cj ~ N(0, std_cj²), the margin noise (u_y − u_o)·x_i is
    Gaussian with variance Σ_j (std_yj² + std_oj²) x_ij²."""
    xd, wd = x.astype(np.float64), w.astype(np.float64)
    rows = np.arange(len(y))
    margin = (xd @ wd.T)[rows, y] - (xd @ wd.T)[rows, 1 - y]
    var = np.sum((std[y] ** 2 + std[1 - y] ** 2) * xd**2, axis=1)
    return float(1 - norm.cdf(margin / np.sqrt(var)).mean())


PRECISIONS = pytest.mark.parametrize("precision", ["float32", "bfloat16"])


@PRECISIONS
def test_sigma_prime_has_the_closed_form_accuracy_drop(gaussian_case, precision):
    w, x, y = gaussian_case
    init_w = w * 0.3
    ctx = MeasureContext(nn.Sequential(linear(w)), init_model=nn.Sequential(linear(init_w)),
                         x_train=torch.from_numpy(x), y_train=torch.from_numpy(y), device="cpu",
                         options=MeasureOptions(precision=precision))
    got = compute(ctx, ["pacbayes_sigma", "pacbayes_init", "pacbayes_orig", "pacbayes_flatness"])
    assert ctx.details["monte_carlo_precision"] == precision
    sigma = got["pacbayes_sigma"]
    # The noise applied has standard deviation σ (not σ²): the closed-form drop at σ′ is 0.1.
    assert drop_under_noise(w, x, y, np.full_like(w, sigma, dtype=np.float64)) == pytest.approx(
        0.1, abs=0.02)
    m, wd = len(y), w.astype(np.float64)
    assert got["pacbayes_orig"] == pytest.approx(
        np.sum(wd**2) / (4 * sigma**2) + math.log(m / sigma) + 10, rel=1e-6)
    assert got["pacbayes_init"] == pytest.approx(
        np.sum((wd - init_w) ** 2) / (4 * sigma**2) + math.log(m / sigma) + 10, rel=1e-6)
    assert got["pacbayes_flatness"] == pytest.approx(1 / sigma**2)
    result = ctx.sigma_search
    assert result.value == sigma and result.examples > 0 and result.probes[-1].scale == sigma


@PRECISIONS
def test_magnitude_aware_sigma_prime_and_its_bounds(gaussian_case, precision):
    w, x, y = gaussian_case
    init_w = w * 0.3
    ctx = MeasureContext(nn.Sequential(linear(w)), init_model=nn.Sequential(linear(init_w)),
                         x_train=torch.from_numpy(x), y_train=torch.from_numpy(y), device="cpu",
                         options=MeasureOptions(precision=precision))
    names = ["pacbayes_mag_sigma", "pacbayes_mag_init", "pacbayes_mag_orig",
             "pacbayes_mag_flatness"]
    got = compute(ctx, names)
    assert ctx.details["monte_carlo_precision"] == precision
    sigma, eps = got["pacbayes_mag_sigma"], 1e-3
    wd = w.astype(np.float64)
    std = np.sqrt(sigma**2 * wd**2 + eps**2)
    assert drop_under_noise(w, x, y, std) == pytest.approx(0.1, abs=0.02)
    m, omega = len(y), wd.size
    delta = wd - init_w.astype(np.float64)

    def bound(v):
        num = eps**2 + (sigma**2 + 1) * np.sum(v**2) / omega
        den = eps**2 + sigma**2 * delta**2
        return 0.25 * np.sum(np.log(num / den)) + math.log(m / sigma) + 10

    assert got["pacbayes_mag_init"] == pytest.approx(bound(delta), rel=1e-6)
    assert got["pacbayes_mag_orig"] == pytest.approx(bound(wd), rel=1e-6)
    assert got["pacbayes_mag_flatness"] == pytest.approx(1 / sigma**2)


@pytest.fixture(scope="module")
def box_case():
    """Inputs c_i·v with one label: every example's worst box perturbation is the same corner,
    so the worst-case drop is the share of examples whose flip radius α_i* is below α. The
    second class's weights share the first's signs and c spans a factor 50, so that the
    magnitude-aware radii spread over about [0.53, 0.86] (with opposite signs they all lay
    within 0.15 % of each other: a cliff that a search of 15 probes lands on by luck)."""
    rng = np.random.default_rng(1)
    v = rng.normal(size=4)
    c = rng.uniform(0.1, 5.0, size=2000)
    w = np.stack([0.4 * np.sign(v), 0.1 * np.sign(v)]).astype(np.float32) \
        + rng.normal(scale=0.05, size=(2, 4)).astype(np.float32)
    b = np.array([0.3, -0.1], dtype=np.float32)
    x = (c[:, None] * v[None, :]).astype(np.float32)
    y = np.zeros(len(c), dtype=np.int64)
    return w, b, x, y, c, v


def test_alpha_prime_has_the_closed_form_worst_case_drop(box_case):
    w, b, x, y, c, v = box_case
    wd, bd = w.astype(np.float64), b.astype(np.float64)
    init = nn.Sequential(linear(w * 0.5, b * 0.5))
    ctx = MeasureContext(nn.Sequential(linear(w, b)), init_model=init,
                         x_train=torch.from_numpy(x), y_train=torch.from_numpy(y), device="cpu",
                         options=MeasureOptions(precision="float32"))
    names = ["sharpness_alpha", "sharpness_init", "sharpness_orig", "sharpness_flatness",
             "sharpness_mag_alpha", "sharpness_mag_init", "sharpness_mag_orig",
             "sharpness_mag_flatness"]
    got = compute(ctx, names)
    margin = x.astype(np.float64) @ (wd[0] - wd[1]) + (bd[0] - bd[1])
    assert (margin > 0).all()
    # Plain box |u| ≤ α: the margin falls by 2α(‖x_i‖₁ + 1).
    flip = margin / (2 * (np.abs(x).sum(1) + 1))
    assert np.mean(flip < got["sharpness_alpha"]) == pytest.approx(0.1, abs=0.025)
    # the bracketing screens ascend: at α = 0.5 a random start flips no example, the short
    # ascent reaches the corner and flips all (flip radii are 0.14 to 0.19)
    screen = ctx.alpha_search.probes[1]
    assert (screen.scale, screen.verdict, screen.drop) == (0.5, "lower", 1.0)
    # Magnitude-aware box |u| ≤ α|w| + ε.
    eps = 1e-3
    scale = np.abs(x) @ (np.abs(wd[0]) + np.abs(wd[1])) + np.abs(bd).sum()
    flip_mag = (margin - eps * (2 * np.abs(x).sum(1) + 2)) / scale
    assert np.mean(flip_mag < got["sharpness_mag_alpha"]) == pytest.approx(0.1, abs=0.025)

    alpha, alpha_mag = got["sharpness_alpha"], got["sharpness_mag_alpha"]
    params = np.concatenate([wd.ravel(), bd])
    params0 = np.concatenate([(wd * 0.5).ravel(), bd * 0.5])
    m, omega, delta_conf = len(y), params.size, 0.1
    log_term = math.log(2 * omega / delta_conf)
    sigma_alpha = alpha / math.sqrt(2 * log_term)
    for name, v2 in (("sharpness_orig", params), ("sharpness_init", params - params0)):
        expected = np.sum(v2**2) * math.log(2 * omega) / (4 * alpha**2) \
            + math.log(m / sigma_alpha) + 10
        assert got[name] == pytest.approx(expected, rel=1e-6), name
    assert got["sharpness_flatness"] == pytest.approx(1 / alpha**2)
    assert got["sharpness_mag_flatness"] == pytest.approx(1 / alpha_mag**2)
    for name, v2 in (("sharpness_mag_orig", params), ("sharpness_mag_init", params - params0)):
        num = eps**2 + (alpha_mag**2 + 4 * log_term) * np.sum(v2**2) / omega
        den = eps**2 + alpha_mag**2 * (params - params0) ** 2
        expected = 0.25 * np.sum(np.log(num / den)) + math.log(m / delta_conf) + 10
        assert got[name] == pytest.approx(expected, rel=1e-6), name


def test_alpha_prime_in_bfloat16_is_the_closed_form_within_its_rounding(box_case):
    """The plain box's worst-case drop is a cliff here (a fifth of the flip radii lie within
    0.7 % of each other, around the 10 % quantile), so the drop at α′ would flag a 0.2 % error
    in α′; bfloat16 (8 significant bits) is asked to land within 0.5 % of the exact α′."""
    w, b, x, y, c, v = box_case
    wd, bd = w.astype(np.float64), b.astype(np.float64)
    ctx = MeasureContext(nn.Sequential(linear(w, b)), x_train=torch.from_numpy(x),
                         y_train=torch.from_numpy(y), device="cpu",
                         options=MeasureOptions(precision="bfloat16"))
    got = compute(ctx, ["sharpness_alpha"])["sharpness_alpha"]
    assert ctx.details["monte_carlo_precision"] == "bfloat16"
    margin = x.astype(np.float64) @ (wd[0] - wd[1]) + (bd[0] - bd[1])
    flip = margin / (2 * (np.abs(x).sum(1) + 1))
    assert got == pytest.approx(np.quantile(flip, 0.1), rel=5e-3)


def test_bisection_finds_the_scale_of_a_known_monotone_drop():
    opts = MeasureOptions()
    calls = []

    def probe(scale: float) -> Probe:  # drop = scale / 3: the target 0.1 sits at 0.3
        calls.append(scale)
        drop = scale / 3
        verdict = ("accept" if abs(drop - 0.1) < opts.tolerance
                   else "lower" if drop > 0.1 else "raise")
        return Probe(scale, drop, 0.0, 1, verdict)

    result = search_scale(probe, opts)  # no screens: every probe a full one
    assert abs(result.value / 3 - 0.1) < opts.tolerance
    assert calls[0] == opts.search_upper and len(calls) <= opts.search_depth


def test_bisection_widens_the_bracket_when_the_upper_end_is_too_small():
    opts = MeasureOptions(search_upper=0.5)

    def probe(scale: float) -> Probe:  # target at 5.0, ten times the first upper end
        drop = scale / 50
        verdict = ("accept" if abs(drop - 0.1) < opts.tolerance
                   else "lower" if drop > 0.1 else "raise")
        return Probe(scale, drop, 0.0, 1, verdict)

    assert search_scale(probe, opts).value == pytest.approx(5.0, rel=0.1)


def verdict_of(drop: float, opts: MeasureOptions) -> str:
    return ("accept" if abs(drop - opts.deviation) < opts.tolerance
            else "lower" if drop > opts.deviation else "raise")


@pytest.mark.parametrize("true_scale", [3e-4, 0.02, 0.7, 40.0])
def test_screens_bracket_the_scale_and_full_probes_find_it(true_scale):
    """A smooth drop D(s) = 0.9·(1 − exp(−(s/s0)²)) crossing 0.1 at ``true_scale``: screens
    (cheap, trusted in both directions) bracket it, a few full probes land in the band."""
    opts = MeasureOptions()
    s0 = true_scale / math.sqrt(-math.log(1 - 0.1 / 0.9))
    full, screens = [], []

    def drop(scale: float) -> float:
        return 0.9 * (1 - math.exp(-((scale / s0) ** 2)))

    def probe(scale: float) -> Probe:
        full.append(scale)
        return Probe(scale, drop(scale), 0.0, 1000, verdict_of(drop(scale), opts))

    def screen(scale: float) -> Probe:
        screens.append(scale)
        d = drop(scale)  # a screen only settles far from the target
        verdict = "lower" if d > 0.2 else "raise" if d < 0.05 else "undecided"
        return Probe(scale, d, 0.05, 100, verdict)

    result = search_scale(probe, opts, screen)
    assert abs(drop(result.value) - 0.1) < opts.tolerance
    assert len(full) <= 4 and len(screens) <= 12
    assert result.examples == 1000 * len(full) + 100 * len(screens)


def test_a_steep_saturating_drop_is_found_by_a_logistic_interpolation():
    """D(s) = 0.9/(1 + (s50/s)⁸), the shape of α′'s worst-case drop on the issue-10 NiN (0.02 at
    s50/1.6, 0.8 at s50·1.6): screens that prove only "too large" leave a bracket whose upper
    end is near saturation, where D ∝ s² through the lower end overshoots (6 full probes);
    a logistic curve in log s through both ends needs 3."""
    opts = MeasureOptions()
    full = []

    def drop(scale: float) -> float:
        return 0.9 / (1 + (2e-4 / scale) ** 8)

    def probe(scale: float) -> Probe:
        full.append(scale)
        return Probe(scale, drop(scale), 0.0, 1000, verdict_of(drop(scale), opts))

    def screen(scale: float) -> Probe:
        return Probe(scale, drop(scale), 0.05, 100, "lower" if drop(scale) > 0.2 else "undecided")

    result = search_scale(probe, opts, screen)
    assert abs(drop(result.value) - 0.1) < opts.tolerance
    assert len(full) <= 3


def test_a_step_shaped_drop_is_found_by_bisection_in_log_scale():
    """Drops of 0 or 0.9 say nothing about where the target is crossed: the search bisects."""
    opts = MeasureOptions()

    def probe(scale: float) -> Probe:  # the band [0.09, 0.11] is only 1 % wide in scale
        drop = 0.0 if scale < 0.5 else 0.1 if scale < 0.505 else 0.9
        return Probe(scale, drop, 0.0, 1, verdict_of(drop, opts))

    result = search_scale(probe, opts)
    assert 0.5 <= result.value < 0.505


def test_magnitude_aware_searches_end_at_zero_when_epsilon_alone_drops_too_much(gaussian_case):
    """With ε = 5 the magnitude-aware noise at σ = 0 already lowers the accuracy by more than
    0.1 (closed form): σ′ and α′ are 0, found in a few probes, and the bounds built on
    1/scale are infinite."""
    w, x, y = gaussian_case
    eps = 5.0
    assert drop_under_noise(w, x, y, np.full_like(w, eps, dtype=np.float64)) > 0.2
    model = nn.Sequential(linear(w))
    ctx = MeasureContext(model, nn.Sequential(linear(np.zeros_like(w))), torch.from_numpy(x),
                         torch.from_numpy(y), device="cpu", options=MeasureOptions(mag_eps=eps))
    got = compute(ctx, ["pacbayes_mag_sigma", "pacbayes_mag_flatness", "pacbayes_mag_init",
                        "sharpness_mag_alpha", "sharpness_mag_flatness", "sharpness_mag_init"])
    assert got["pacbayes_mag_sigma"] == 0.0 and got["sharpness_mag_alpha"] == 0.0
    assert got["pacbayes_mag_flatness"] == math.inf and got["pacbayes_mag_init"] == math.inf
    assert got["sharpness_mag_flatness"] == math.inf
    assert math.isfinite(got["sharpness_mag_init"])  # its ε² terms keep it finite at α′ = 0
    for search in (ctx.mag_sigma_search, ctx.mag_alpha_search):
        assert search.probes[-1].scale == 0.0 and search.drop > 0.1
        # the first screen drops too much, so scale 0 is screened at once and ends it
        assert [(p.scale, p.verdict) for p in search.probes] == [(2.0, "lower"), (0.0, "lower")]


@pytest.mark.parametrize("floor_drop", [0.5, 0.1, 0.0])
def test_the_floor_probe_ends_or_joins_the_search(floor_drop):
    """D(s) = floor + 0.9·(1 − exp(−s²)): a floor above the target ends the search at 0 after
    one full probe at 0; within the band, 0 is accepted; below it the search goes on and finds
    the crossing, with one full probe more at most."""
    opts = MeasureOptions()
    full = []

    def drop(scale: float) -> float:
        return min(1.0, floor_drop + 0.9 * (1 - math.exp(-scale * scale)))

    def probe(scale: float) -> Probe:
        full.append(scale)
        return Probe(scale, drop(scale), 0.0, 1000, verdict_of(drop(scale), opts))

    result = search_scale(probe, opts, floor=True)
    if floor_drop >= 0.1:
        assert result.value == 0.0 and full[-1] == 0.0 and len(full) == 2
    else:
        assert abs(drop(result.value) - 0.1) < opts.tolerance
        assert full.count(0.0) <= 1


@pytest.mark.parametrize("floor_drop", [0.5, 0.0])
def test_screens_look_at_the_floor_after_their_first_large_drop(floor_drop):
    """The same D(s) with cheap screens that prove "too large" or "too small": a floor above
    the target ends the search at 0 after two screens (the upper scale, then 0) and no full
    probe; a floor below it is screened once and never probed, and the search goes on."""
    opts = MeasureOptions()
    full, screened = [], []

    def drop(scale: float) -> float:
        return min(1.0, floor_drop + 0.9 * (1 - math.exp(-scale * scale)))

    def probe(scale: float) -> Probe:
        full.append(scale)
        return Probe(scale, drop(scale), 0.0, 1000, verdict_of(drop(scale), opts))

    def screen(scale: float) -> Probe:
        screened.append(scale)
        verdict = "lower" if drop(scale) > 0.2 else "raise" if drop(scale) < 0.05 else "undecided"
        return Probe(scale, drop(scale), 0.0, 100, verdict)

    result = search_scale(probe, opts, screen, floor=True)
    if floor_drop > 0.1:
        assert result.value == 0.0 and screened == [opts.search_upper, 0.0] and full == []
    else:
        assert abs(drop(result.value) - 0.1) < opts.tolerance
        assert screened.count(0.0) == 1 and 0.0 not in full
