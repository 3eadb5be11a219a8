"""Fitting an ESD's bulk with the Marchenko–Pastur (MP) law, as WeightWatcher's ``mp_fit`` does.

For an N × M slice (Q = N/M ≥ 1), the eigenvalues are rescaled to mean 1, smoothed by a kernel
density estimate (linear kernel, bandwidth 0.1) on 1,000 points of [0, max + 0.5], and the MP
density of scale σ is fitted to the estimate by least squares where the estimate exceeds 0.01.
σ runs over WeightWatcher's range, 0.05 s … 2 s with s = √(λ_max/(1+1/√Q)²);
a σ whose bulk edges miss the density's peak or overshoot the data is rejected (residual 1000
per point). For Q = 1 the singular values are fitted with the quarter-circle law instead.
WeightWatcher scans it in steps of 0.01 s and polishes the best point with Nelder–Mead; gengap
searches coarse to fine (steps of 0.05 s, then 0.01 s and 0.001 s around the best point):
deterministic, batched over ESDs, and within about 1e-3 of WeightWatcher's σ on the benchmarks.
(A golden-section polish instead of the 0.001 s grid was tried: the residual of a small ESD is
bumpy at that scale and the polish stopped in other local minima.)

Speed (the zoo benchmark fits thousands of small ESDs): the KDE on the evenly spaced grid comes
from histograms and cumulative sums (:func:`linear_kde_grid`); for Q = 1 the residual has a
closed form in σ (three sums per ESD); for Q > 1 only the σ that are not rejected are evaluated,
each on the grid points inside its bulk: Σ model² by prefix sums, Σ model·d as a batched
matrix-vector product over ESDs grouped by bulk width (:class:`Residuals`). An ESD's fit does
not depend on the ESDs batched with it (float64, elementwise up to the final sums).

Results: σ_MP, the bulk edge λ₊ = (σ(1 + 1/√Q))², ``mp_softrank`` = λ₊/λ_max and the number of
spikes above λ₊ + √TW (a Tracy–Widom allowance TW = Q^{-1/2} λ₊^{2/3} M^{-2/3}).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

BANDWIDTH = 0.1
GRID_POINTS = 1000
DENSITY_FLOOR = 0.01
REJECTED = 1000.0
CHUNK = 1 << 22  # elements of one (ESD × σ × grid point) block
ROW_GROUPS = 2  # a block's ESDs are evaluated in this many groups of similar window widths


@dataclass(frozen=True)
class MPFit:
    """Per-ESD results, each of shape (batch,)."""

    sigma_mp: torch.Tensor
    bulk_max: torch.Tensor
    bulk_min: torch.Tensor
    mp_softrank: torch.Tensor
    num_spikes: torch.Tensor


def linear_kde(samples: torch.Tensor, points: torch.Tensor, bandwidth: float) -> torch.Tensor:
    """Density at ``points`` (B, G) of the linear-kernel KDE of ``samples`` (B, n):
    (1/(n h)) Σ_i max(0, 1 − |g − x_i|/h), by prefix sums over the sorted samples."""
    x = samples.sort(dim=1).values
    n = x.shape[1]
    zero = torch.zeros_like(x[:, :1])
    csum = torch.cat([zero, x.cumsum(1)], dim=1)

    def count_sum(lo: torch.Tensor, hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a = torch.searchsorted(x, lo.contiguous(), right=True)  # x > lo
        b = torch.searchsorted(x, hi.contiguous(), right=False)  # x < hi
        return (b - a).clamp(min=0).to(x.dtype), csum.gather(1, b) - csum.gather(1, a.clamp(max=b))

    left_n, left_s = count_sum(points - bandwidth, points)  # g − h < x ≤ g … (≤ handled below)
    right_n, right_s = count_sum(points, points + bandwidth)
    # points exactly equal to g count once, on the left side (weight 1)
    eq_n, eq_s = _equal(x, csum, points)
    left_n, left_s = left_n + eq_n, left_s + eq_s
    total = (left_n - (points * left_n - left_s) / bandwidth) + (
        right_n - (right_s - points * right_n) / bandwidth
    )
    return total / (n * bandwidth)


def linear_kde_grid(samples: torch.Tensor, grid: torch.Tensor, bandwidth: float) -> torch.Tensor:
    """:func:`linear_kde` on evenly spaced points: ``grid`` (B, G) with row b equal to
    linspace(0, top_b, G). Counts and sums of the samples below g − h, g and g + h come from
    one histogram per threshold (each sample's first grid index at or above it) and a cumulative
    sum: O(n + G) per row instead of binary searches. A sample that rounding puts on the other
    side of a threshold contributes the same there (its kernel weight is 0 at g ± h and 1 on
    both sides of g), so the result equals :func:`linear_kde` to rounding."""
    batch, points = grid.shape
    x = samples
    n = x.shape[1]
    step = (grid[:, -1:] / (points - 1)).clamp(min=1e-300)
    rows = torch.arange(batch, device=x.device)[:, None] * (points + 1)

    def below(shift: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Count and sum of the samples x ≤ g + shift, at every grid point g."""
        first = torch.ceil((x - shift) / step).clamp(0, points).long() + rows
        size = batch * (points + 1)
        count = torch.bincount(first.flatten(), minlength=size).to(x.dtype)
        total = torch.bincount(first.flatten(), weights=x.flatten(), minlength=size)
        count = count.view(batch, points + 1).cumsum(1)[:, :points]
        total = total.view(batch, points + 1).cumsum(1)[:, :points]
        return count, total

    c_lo, s_lo = below(-bandwidth)
    c_mid, s_mid = below(0.0)
    c_hi, s_hi = below(bandwidth)
    left_n, left_s = c_mid - c_lo, s_mid - s_lo
    right_n, right_s = c_hi - c_mid, s_hi - s_mid
    total = (left_n - (grid * left_n - left_s) / bandwidth) + (
        right_n - (right_s - grid * right_n) / bandwidth
    )
    return total / (n * bandwidth)


def _equal(
    x: torch.Tensor, csum: torch.Tensor, points: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    a = torch.searchsorted(x, points.contiguous(), right=False)
    b = torch.searchsorted(x, points.contiguous(), right=True)
    return (b - a).to(x.dtype), csum.gather(1, b) - csum.gather(1, a)


def fit_mp(evals: torch.Tensor, n_rows: int, n_cols: int) -> MPFit:
    """MP fit of a batch of ESDs (B, n) of N × M slices (N = ``n_rows`` ≥ M = ``n_cols``)."""
    # an ESD without positive finite mass (an all-zero matrix) has no shape to fit: NaN, fitted
    # on a stand-in so that the batch's other ESDs are unaffected
    total = evals.sum(dim=1, dtype=torch.float64)
    shapeless = ~(torch.isfinite(total) & (total > 0))
    any_shapeless = bool(shapeless.any())
    if any_shapeless:
        evals = torch.where(shapeless[:, None], torch.ones_like(evals), evals)
    rows = max(1, CHUNK // (40 * GRID_POINTS))  # ESDs per block: ≤ 40 σ at a time
    parts = [_fit_mp(evals[i : i + rows], n_rows, n_cols) for i in range(0, len(evals), rows)]
    fields = [torch.cat([getattr(p, f) for p in parts]) for f in MPFit.__dataclass_fields__]
    if any_shapeless:
        fields = [f.masked_fill(shapeless, math.nan) for f in fields]
    return MPFit(*fields)


def _fit_mp(evals: torch.Tensor, n_rows: int, n_cols: int) -> MPFit:
    q = n_rows / n_cols
    e = evals.double()
    scaled = e * (e.shape[1] / e.sum(dim=1, keepdim=True))
    lam_max = scaled.amax(dim=1)
    fitted = scaled.clamp(min=0).sqrt() if q == 1 else scaled
    top = fitted.amax(dim=1, keepdim=True) + 0.5
    grid = torch.linspace(0, 1, GRID_POINTS, dtype=e.dtype, device=e.device)[None] * top
    density = linear_kde_grid(fitted, grid, BANDWIDTH)
    good = density > DENSITY_FLOOR
    # only points above the floor enter the fit: move them (in order) to the front and drop
    # the columns no ESD needs
    keep = int(good.sum(dim=1).max())
    order = good.to(torch.int8).argsort(dim=1, descending=True, stable=True)[:, : max(keep, 1)]
    grid, density, good = grid.gather(1, order), density.gather(1, order), good.gather(1, order)

    scale = (lam_max / (1 + 1 / math.sqrt(q)) ** 2).sqrt()
    # coarse to fine: steps of 0.05 s over [0.05 s, 2 s), then 0.01 s (WeightWatcher's grid)
    # and 0.001 s around the best point
    steps = torch.arange(0.05, 2.0, 0.05, dtype=e.dtype, device=e.device)
    residuals = Residuals(grid, density, good, q)
    sigma = residuals.best(scale[:, None] * steps[None])
    for step, half in ((0.01, 5), (0.001, 10)):
        offsets = torch.arange(-half, half + 1, dtype=e.dtype, device=e.device) * step
        near = (sigma[:, None] + scale[:, None] * offsets[None]).clamp(min=0.05 * scale[:, None])
        sigma = residuals.best(near)

    bulk_max = (sigma * (1 + 1 / math.sqrt(q))) ** 2
    bulk_min = (sigma * (1 - 1 / math.sqrt(q))) ** 2
    tw = 1 / math.sqrt(q) * bulk_max ** (2 / 3) * n_cols ** (-2 / 3)
    spikes = (scaled > (bulk_max + tw.sqrt())[:, None]).sum(dim=1).to(e.dtype)
    return MPFit(sigma, bulk_max, bulk_min, bulk_max / lam_max, spikes)


class Residuals:
    """Squared residuals Σ_g (MP density of scale σ at g − KDE at g)² over each ESD's fitted
    grid points, for many σ at once, with WeightWatcher's rejections (residual 1000 per point);
    ``best`` keeps the first σ with the least residual, as a scan over the σ values would.

    Two shortcuts, both exact (float64): for Q = 1 the quarter-circle density is c(g)/σ², so the
    residual is A/σ⁴ − 2B/σ² + C with three sums per ESD; for Q > 1 the σ values that are
    rejected (their bulk edges miss the density's peak or overshoot the data) form no part of
    the minimum unless all are, so only the others are evaluated (the accepted σ are moved to
    the front of each row; usually a third of the grid). With the MP density
    √((b − g)(g − a))/(c g), Σ model² has a closed form in prefix sums of 1/g and 1/g² over the
    points inside (a, b); only Σ model·d is summed point by point."""

    def __init__(self, grid: torch.Tensor, density: torch.Tensor, good: torch.Tensor,
                 q: float) -> None:
        self.q = q
        grid, density = grid.double(), density.double()
        kept = good.to(grid.dtype)
        self.count = good.sum(dim=1).to(grid.dtype)
        self.dd = (density * density * kept).sum(dim=1)
        if q == 1:
            circle = (4 - grid * grid).clamp(min=0).sqrt() / math.pi
            self.aa = (circle * circle * kept).sum(dim=1)
            self.ab = (circle * density * kept).sum(dim=1)
            return
        masked = torch.where(good, density, torch.full_like(density, -1.0))
        self.peak = grid.gather(1, masked.argmax(dim=1, keepdim=True)).squeeze(1)
        self.last = torch.where(good, grid, torch.full_like(grid, -math.inf)).amax(dim=1)
        # the fitted points come first, in ascending order; the others move to x = +inf, where
        # every MP density is 0 (they add nothing and keep each row sorted)
        self.x = torch.where(good, grid, torch.full_like(grid, math.inf)).contiguous()
        self.inv_x = torch.where(self.x > 0, 1 / self.x, 0.0)  # g = 0 is inside no bulk
        zero = torch.zeros_like(self.x[:, :1])
        self.sum_inv = torch.cat([zero, self.inv_x.cumsum(1)], dim=1)
        self.sum_inv_sq = torch.cat([zero, (self.inv_x * self.inv_x).cumsum(1)], dim=1)
        self.weight_d = 2 * density * kept * self.inv_x

    def best(self, sigmas: torch.Tensor) -> torch.Tensor:
        """The σ of each row of ``sigmas`` (B, S) with the least residual (first on ties)."""
        return sigmas.gather(1, self(sigmas).argmin(dim=1, keepdim=True)).squeeze(1)

    def __call__(self, sigmas: torch.Tensor) -> torch.Tensor:
        """The residual (B, S) of each σ of ``sigmas`` (B, S); rejected σ get the penalty."""
        if self.q == 1:
            s2 = sigmas * sigmas
            return self.aa[:, None] / (s2 * s2) - 2 * self.ab[:, None] / s2 + self.dd[:, None]
        root_y = math.sqrt(1 / self.q)
        upper = (sigmas * (1 + root_y)) ** 2
        lower = (sigmas * (1 - root_y)) ** 2
        peak = self.peak[:, None]
        valid = (upper >= peak) & (upper <= self.last[:, None]) & (lower <= peak)
        out = (REJECTED**2 * self.count)[:, None].expand(sigmas.shape).clone()
        width = int(valid.sum(dim=1).max())
        if width == 0:
            return out
        if width < sigmas.shape[1]:  # evaluate the accepted σ only, moved to the front
            order = valid.to(torch.int8).argsort(dim=1, descending=True, stable=True)[:, :width]
            s, ok = sigmas.gather(1, order), valid.gather(1, order)
            b, a = upper.gather(1, order), lower.gather(1, order)
        else:
            order, s, ok, b, a = None, sigmas, valid, upper, lower
        # Σ model² in closed form: (b − g)(g − a)/g² = −1 + (a + b)/g − ab/g², summed over the
        # points strictly inside (a, b) by prefix sums over the sorted fitted points
        first = torch.searchsorted(self.x, a.contiguous(), right=True)
        stop = torch.searchsorted(self.x, b.contiguous(), right=False)
        between = lambda sums: sums.gather(1, stop) - sums.gather(1, first)  # noqa: E731
        squares = (a + b) * between(self.sum_inv) - a * b * between(self.sum_inv_sq) - (
            stop - first).to(s.dtype)
        # Σ model·d needs √((b − g)(g − a)), on each row's window of columns from the lowest a
        # to the highest b of its accepted σ; rows of similar window widths go together, so
        # little of the work is padding
        lo = torch.where(ok, first, self.x.shape[1]).amin(dim=1)
        hi = torch.where(ok, stop, 0).amax(dim=1)
        by_width = (hi - lo).argsort()
        cross = torch.empty_like(s)
        for rows in by_width.split(-(-len(by_width) // ROW_GROUPS)):
            cross[rows] = self._cross(rows, a[rows], b[rows], lo[rows, None], hi[rows, None])
        c = (2 * math.pi / self.q) * (s * s)
        resid = squares / (c * c) - cross / c + self.dd[:, None]
        if order is None:
            return torch.where(ok, resid, out)
        resid = torch.where(ok, resid, out.gather(1, order))
        return out.scatter(1, order, resid)

    def _cross(self, rows: torch.Tensor, a: torch.Tensor, b: torch.Tensor, lo: torch.Tensor,
               hi: torch.Tensor) -> torch.Tensor:
        """Σ_g √((b − g)(g − a))·2d(g)/g over the fitted points g of ``rows`` in [lo, hi),
        for each (row, σ) with bulk edges a, b (R, S); computed as √(r² − (g − m)²), m and r
        the bulk's centre and half-width, elementwise (so an ESD's σ does not depend on the
        ESDs batched with it)."""
        x_all = self.x[rows]
        span = int((hi - lo).max().clamp(min=1))
        cols = (lo + torch.arange(span, device=lo.device)[None]).clamp(max=x_all.shape[1] - 1)
        inside = cols < hi
        x = torch.where(inside, x_all.gather(1, cols), 0.0)[:, None, :]
        weight = torch.where(inside, self.weight_d[rows].gather(1, cols), 0.0)[..., None]
        offset = x - ((a + b) / 2)[..., None]
        root = torch.addcmul(((b - a) / 2).square()[..., None], offset, offset, value=-1)
        # √ as r·r^(−1/2): several times faster than torch's float64 sqrt here (which is slow
        # on zeros); the clamp turns the points outside the bulk into 1e-150, not 0
        root.clamp_(min=1e-300)
        return torch.bmm(root.mul_(root.rsqrt()), weight).squeeze(-1)
