"""The power-law fit of an ESD's tail: Clauset, Shalizi & Newman (2009), as WeightWatcher does it.

For every candidate x_min among the sorted eigenvalues (all but the largest), the continuous
maximum-likelihood exponent of the tail x ≥ x_min is α = 1 + n / Σ_{x_i ≥ x_min} ln(x_i / x_min)
(n = tail size), and the Kolmogorov–Smirnov distance between the tail's empirical CDF and the
fitted one, D = max_j |1 − (x_j/x_min)^{1−α} − j/n|, is computed; the x_min with the smallest D
is kept. σ = (α − 1)/√n. Eigenvalues ≤ 1e-5 are dropped first. Candidates with α ≤ 1 get D = 1,
as in WeightWatcher; an ESD with no other candidate (its values all equal: α = inf) has no fit
(NaN).

Vectorized: all candidates of a batch of ESDs at once, as a (batch, candidate, eigenvalue) grid
computed in chunks, instead of a Python loop per candidate.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

EVALS_THRESH = 1e-5
MAX_GRID = 1 << 15  # elements of one chunk of the candidate × eigenvalue grid (cache-sized)


@dataclass(frozen=True)
class PowerLawFit:
    """Per-ESD results, each a tensor of shape (batch,); NaN where an ESD has < 2 eigenvalues
    above the threshold or no candidate tail gives a finite α > 1 (all values equal)."""

    alpha: torch.Tensor
    xmin: torch.Tensor
    D: torch.Tensor  # noqa: N815  (the KS distance's usual name)
    sigma: torch.Tensor
    num_pl_spikes: torch.Tensor


def right_aligned(evals: list[torch.Tensor], thresh: float = EVALS_THRESH) -> tuple[
    torch.Tensor, torch.Tensor
]:
    """Pack ascending ESDs of different lengths into one (batch, L) tensor, each right-aligned
    (its largest eigenvalue last) after dropping values ≤ ``thresh``; padding is 1.0 and never
    enters a fit. Returns the tensor and the kept counts."""
    kept = [e[e > thresh] for e in evals]
    counts = torch.tensor([len(k) for k in kept])
    width = max(int(counts.max()), 2) if len(kept) else 2
    ref = evals[0] if evals else torch.zeros(0, dtype=torch.float64)
    out = torch.ones(len(kept), width, dtype=ref.dtype, device=ref.device)
    for row, k in enumerate(kept):
        if len(k):
            out[row, width - len(k):] = k
    return out, counts.to(ref.device)


def fit_power_law(
    evals: torch.Tensor | list[torch.Tensor], thresh: float = EVALS_THRESH
) -> PowerLawFit:
    """Fit every ESD of ``evals``: a (batch, n) tensor of ascending ESDs of equal length, or a
    list of ascending 1-D ESDs of any lengths."""
    if isinstance(evals, torch.Tensor) and evals.dim() == 2:
        # ascending rows: the values ≤ thresh are a prefix, so padding them with 1.0 leaves
        # the kept ones right-aligned
        keep = evals > thresh
        counts = keep.sum(dim=1)
        width = max(int(counts.max()), 2) if len(evals) else 2
        x = torch.where(keep, evals, 1.0)[:, max(evals.shape[1] - width, 0):]
        if x.shape[1] < width:  # fewer than 2 eigenvalues: left-pad to the fit's minimum
            x = torch.cat([torch.ones_like(x[:, :1]).expand(-1, width - x.shape[1]), x], 1)
    else:
        x, counts = right_aligned(list(evals), thresh)
    return _fit_right_aligned(x, counts)


def _fit_right_aligned(x: torch.Tensor, counts: torch.Tensor) -> PowerLawFit:
    batch, width = x.shape
    logx = x.log()
    pos = torch.arange(width, device=x.device)
    tail = (width - pos).to(x.dtype)  # tail size of the candidate at each position
    suffix = logx.flip(1).cumsum(1).flip(1)
    alpha = 1 + tail / (suffix - tail * logx)

    ks = torch.empty_like(x)
    for lo, hi in _chunks(batch, width):
        cand = pos[lo:hi]
        # |F_fit − F_emp| over the tail: F_fit = 1 − (x_j/x_min)^{1−α}; only columns j ≥ lo
        grid = logx[:, None, lo:] - logx[:, lo:hi, None]
        grid.mul_(alpha[:, lo:hi, None] - 1).neg_().exp_()
        empirical = (pos[None, lo:] - cand[:, None]).to(x.dtype) / tail[lo:hi, None]
        grid.add_(empirical).sub_(1).abs_()
        width_c = hi - lo  # only the first columns hold j < candidate
        grid[:, :, :width_c].masked_fill_(pos[None, lo:hi] < cand[:, None], 0.0)
        ks[:, lo:hi] = grid.amax(dim=-1)

    in_tail = (pos[None, :] >= (width - counts)[:, None]) & (pos[None, :] < width - 1)
    proper = torch.isfinite(alpha) & (alpha > 1)
    score = torch.where(proper, ks, torch.ones_like(ks))
    score = torch.where(in_tail, score, torch.full_like(ks, float("inf")))
    best = score.argmin(dim=1, keepdim=True)

    pick = lambda t: t.gather(1, best).squeeze(1)  # noqa: E731
    n_tail = (width - best.squeeze(1)).to(x.dtype)
    a = pick(alpha)
    fit = PowerLawFit(
        alpha=a,
        xmin=pick(x),
        D=pick(score),
        sigma=(a - 1) / n_tail.sqrt(),
        num_pl_spikes=n_tail,
    )
    # no candidate with a finite α > 1: the tail's eigenvalues are all equal (Σ ln(x/x_min)
    # = 0, α = inf), which no power law fits; NaN like an ESD too short to fit
    bad = (counts < 2) | ~pick(proper)
    if bool(bad.any()):
        nan = torch.tensor(float("nan"), dtype=x.dtype, device=x.device)
        fit = PowerLawFit(*(torch.where(bad, nan, t.to(x.dtype)) for t in (
            fit.alpha, fit.xmin, fit.D, fit.sigma, fit.num_pl_spikes)))
    return fit


def _chunks(batch: int, width: int) -> list[tuple[int, int]]:
    """Candidate ranges [lo, hi) whose grids (batch × (hi − lo) × (width − lo)) stay near
    MAX_GRID elements; later chunks are narrower in j, so they take more candidates."""
    out, lo = [], 0
    while lo < width - 1:
        step = max(1, MAX_GRID // max(1, batch * (width - lo)))
        hi = min(width - 1, lo + step)
        out.append((lo, hi))
        lo = hi
    return out
