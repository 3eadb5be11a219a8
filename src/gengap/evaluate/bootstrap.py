"""Bootstrap confidence intervals for Kendall's tau and the granulated Ψ.

A bootstrap resample draws the runs with replacement; a run drawn c times carries weight c.
Kendall's tau-b of a weighted sample is a ratio of quadratic forms, so every resample is a
matrix product instead of a sort:

    tau_b(w) = wᵀ (Sx∘Sy) w / sqrt(wᵀ|Sx|w · wᵀ|Sy|w),   Sx[i, j] = sign(x_i − x_j)

(two copies of one run are tied on both sides, exactly as tau-b counts them). With w = 1 this
is scipy's tau-b. Ψ resamples the runs once for all axes and recomputes every group's tau.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.stats import kendalltau

_DENSE_LIMIT = 3000  # above this many runs, resample with scipy instead of n x n matrices


@dataclass(frozen=True)
class Interval:
    """A point estimate with its percentile bootstrap interval."""

    value: float
    low: float
    high: float

    def __iter__(self):  # value, low, high = interval
        return iter((self.value, self.low, self.high))


def bootstrap_weights(n: int, n_boot: int, seed: int = 0) -> np.ndarray:
    """(n_boot, n) multiplicities of ``n`` runs drawn with replacement."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(float)


def kendall_interval(
    measure: Sequence[float],
    target: Sequence[float],
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Kendall's tau-b with a percentile bootstrap interval over runs (NaN values dropped)."""
    x, y = np.asarray(measure, dtype=float), np.asarray(target, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    n = len(x)
    if n < 2:
        return Interval(float("nan"), float("nan"), float("nan"))
    point = float(kendalltau(x, y, variant="b").statistic)
    if n > _DENSE_LIMIT:
        rng = np.random.default_rng(seed)
        draws = np.empty(n_boot)
        for b in range(n_boot):
            idx = rng.integers(0, n, n)
            draws[b] = kendalltau(x[idx], y[idx], variant="b").statistic
    else:
        sx, sy = _signs(x), _signs(y)
        w = bootstrap_weights(n, n_boot, seed)
        draws = _ratio(w, sx * sy, np.abs(sx), np.abs(sy))
    return Interval(point, *_percentiles(draws, confidence))


def granulated_kendall_interval(
    frame: pd.DataFrame,
    measure: str,
    target: str,
    hyperparameters: Sequence[str],
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[Interval, dict[str, Interval]]:
    """Ψ and each ψ_i with percentile bootstrap intervals over runs.

    Same definition as :func:`gengap.evaluate.granulated_kendall` (undefined groups left out
    of the means); the point estimates equal it.
    """
    data = frame[np.isfinite(frame[measure].to_numpy(dtype=float))
                 & np.isfinite(frame[target].to_numpy(dtype=float))]
    n = len(data)
    x, y = data[measure].to_numpy(float), data[target].to_numpy(float)
    w = np.vstack([np.ones(n), bootstrap_weights(n, n_boot, seed)]) if n else np.ones((1, 0))
    per_axis: dict[str, np.ndarray] = {}
    for axis in hyperparameters:
        others = [h for h in hyperparameters if h != axis]
        if others:
            group = data.groupby(others, dropna=False, sort=False).ngroup().to_numpy()
        else:
            group = np.zeros(n, dtype=np.int64)
        per_axis[axis] = _group_mean_tau(x, y, group, w)
    stacked = np.vstack(list(per_axis.values())) if per_axis else np.full((1, len(w)), np.nan)
    with np.errstate(all="ignore"):
        psi = _nanmean(stacked, axis=0)
    psi_interval = Interval(float(psi[0]), *_percentiles(psi[1:], confidence))
    axes = {a: Interval(float(v[0]), *_percentiles(v[1:], confidence))
            for a, v in per_axis.items()}
    return psi_interval, axes


def _signs(v: np.ndarray) -> np.ndarray:
    return np.sign(v[:, None] - v[None, :])


def _ratio(w: np.ndarray, a: np.ndarray, bx: np.ndarray, by: np.ndarray) -> np.ndarray:
    num = np.einsum("bi,bi->b", w @ a, w)
    dx = np.einsum("bi,bi->b", w @ bx, w)
    dy = np.einsum("bi,bi->b", w @ by, w)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = num / np.sqrt(dx * dy)
    out[(dx <= 0) | (dy <= 0)] = np.nan
    return out


def _group_mean_tau(x: np.ndarray, y: np.ndarray, group: np.ndarray, w: np.ndarray) -> np.ndarray:
    """For each weight row: the mean over groups of the weighted tau-b within each group
    (groups where it is undefined are left out; NaN when none is defined)."""
    rows, cols, a, bx, by = [], [], [], [], []
    for g in np.unique(group):
        idx = np.flatnonzero(group == g)
        i, j = np.meshgrid(idx, idx, indexing="ij")
        sx, sy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
        rows.append(i.ravel())
        cols.append(j.ravel())
        a.append((sx * sy).ravel())
        bx.append(np.abs(sx).ravel())
        by.append(np.abs(sy).ravel())
    n, groups = len(x), len(np.unique(group))
    if n == 0:
        return np.full(len(w), np.nan)
    r, c = np.concatenate(rows), np.concatenate(cols)
    onehot = sparse.csr_matrix((np.ones(n), (np.arange(n), np.searchsorted(np.unique(group),
                                                                             group))),
                               shape=(n, groups))

    def per_group(values: list[np.ndarray]) -> np.ndarray:
        matrix = sparse.csr_matrix((np.concatenate(values), (r, c)), shape=(n, n))
        quad = np.asarray((matrix @ w.T).T) * w  # (boot, n): w_i Σ_j M_ij w_j
        return np.asarray(onehot.T @ quad.T).T  # (boot, groups)

    num, dx, dy = per_group(a), per_group(bx), per_group(by)
    with np.errstate(divide="ignore", invalid="ignore"):
        tau = num / np.sqrt(dx * dy)
    tau[(dx <= 0) | (dy <= 0)] = np.nan
    return _nanmean(tau, axis=1)


def _nanmean(values: np.ndarray, axis: int) -> np.ndarray:
    finite = np.isfinite(values)
    count = finite.sum(axis=axis)
    total = np.where(finite, values, 0.0).sum(axis=axis)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _percentiles(draws: np.ndarray, confidence: float) -> tuple[float, float]:
    finite = draws[np.isfinite(draws)]
    if len(finite) == 0:
        return float("nan"), float("nan")
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(finite, [tail, 100 - tail])
    return float(low), float(high)
