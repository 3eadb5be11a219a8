"""Bootstrap confidence intervals for Kendall's tau and the granulated Ψ.

A bootstrap resample draws the runs with replacement; a run drawn c times carries weight c.
Kendall's tau-b of a weighted sample is a ratio of quadratic forms, so every resample is a
matrix product instead of a sort:

    tau_b(w) = wᵀ (Sx∘Sy) w / sqrt(wᵀ|Sx|w · wᵀ|Sy|w),   Sx[i, j] = sign(x_i − x_j)

(two copies of one run are tied on both sides, exactly as tau-b counts them). With w = 1 this
is scipy's tau-b. Ψ resamples the runs once for all axes and recomputes every group's τ, a
ratio of such forms too (:func:`gengap.evaluate.kendall.axis_tau`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import kendalltau

from gengap.evaluate.kendall import axis_tau, valued_pairs, valued_rows

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
    """Kendall's tau-b with a percentile bootstrap interval over runs (NaN values dropped,
    ±inf at its end, as :func:`gengap.evaluate.kendall`)."""
    x, y = valued_pairs(np.asarray(measure, dtype=float), np.asarray(target, dtype=float))
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

    Same definition as :func:`gengap.evaluate.granulated_kendall`; the point estimates equal
    it.
    """
    data = valued_rows(frame, measure, target)
    n = len(data)
    x, y = data[measure].to_numpy(float), data[target].to_numpy(float)
    w = np.vstack([np.ones(n), bootstrap_weights(n, n_boot, seed)]) if n else np.ones((1, 0))
    per_axis = {axis: axis_tau(data, x, y, axis, hyperparameters, w) for axis in hyperparameters}
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
