"""Kendall's rank correlation and the granulated Kendall coefficient Ψ of Jiang et al. 2020.

Both take plain arrays or a DataFrame; nothing here knows about torch or the zoo.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.stats import kendalltau

from gengap.errors import GengapError
from gengap.evaluate.columns import check_columns
from gengap.evaluate.order import ranked_infinities
from gengap.evaluate.targets import with_target


def kendall(measure: Sequence[float], target: Sequence[float]) -> float:
    """Kendall's tau-b between a measure and a target (ties handled as in tau-b).

    NaN when either side is constant or fewer than two networks have both values. A NaN
    leaves its network out; ±inf is a value at the end it points to.
    """
    x, y = (np.asarray(v, dtype=float) for v in (measure, target))
    x, y = (v.ravel() if v.ndim == 2 and v.shape[1] == 1 else v for v in (x, y))  # a column
    if x.shape != y.shape or x.ndim != 1:
        raise GengapError(f"kendall: the measure has shape {x.shape} and the target "
                          f"{y.shape}; give two sequences of one value per network")
    x, y = valued_pairs(x, y)
    if len(x) < 2:
        return float("nan")
    return float(kendalltau(x, y, variant="b").statistic)


def valued_pairs(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The entries where neither ``x`` nor ``y`` is NaN, infinities ranked at their ends
    (:func:`.order.ranked_infinities`: tau reads the order only)."""
    keep = ~np.isnan(x) & ~np.isnan(y)
    return ranked_infinities(x[keep]), ranked_infinities(y[keep])


def granulated_kendall(
    frame: pd.DataFrame, measure: str, target: str, hyperparameters: Sequence[str]
) -> tuple[float, dict[str, float]]:
    """Ψ and its per-axis terms ψ_i (Jiang et al. 2020, section 4.1).

    ψ_i is the mean, over every setting of the other hyperparameters, of the paper's τ among
    the runs of that setting, (1/|T|(|T|−1)) Σ sign(Δμ)·sign(Δg) over the ordered pairs whose
    value of hyperparameter i differs: ties count 0, so a measure constant within the groups
    (one that depends on other axes only) scores 0 on that axis. Pairs of runs that differ only
    in seed are not pairs where axis i varies and are left out; a group with no pair left is
    too, and an axis with none (a value never varied) gets NaN and is left out of Ψ, the mean
    of the ψ_i. Runs whose measure or target is NaN are dropped first; ±inf is a value at the
    end it points to.
    """
    check_columns(frame, [measure], "measure")
    check_columns(frame, hyperparameters, "hyperparameter")
    data = valued_rows(with_target(frame, target), measure, target)
    x, y = data[measure].to_numpy(float), data[target].to_numpy(float)
    per_axis = {axis: float(axis_tau(data, x, y, axis, hyperparameters, np.ones((1, len(x))))[0])
                for axis in hyperparameters}
    defined = [v for v in per_axis.values() if np.isfinite(v)]
    return (float(np.mean(defined)) if defined else float("nan")), per_axis


def valued_rows(frame: pd.DataFrame, measure: str, target: str) -> pd.DataFrame:
    """The rows of ``frame`` where neither ``measure`` nor ``target`` is NaN, the two columns'
    infinities ranked at their ends (:func:`.order.ranked_infinities`)."""
    x, y = (frame[c].to_numpy(dtype=float) for c in (measure, target))
    keep = ~np.isnan(x) & ~np.isnan(y)
    return frame[keep].assign(**{measure: ranked_infinities(x[keep]),
                                 target: ranked_infinities(y[keep])})


def axis_tau(data: pd.DataFrame, x: np.ndarray, y: np.ndarray, axis: str,
             hyperparameters: Sequence[str], w: np.ndarray) -> np.ndarray:
    """ψ_axis (see :func:`granulated_kendall`) of the runs ``data`` (measure ``x``, target
    ``y``) for each row of run weights ``w`` (B, n): a run of weight c counts as c copies of
    it, which a bootstrap resample is; copies of one run never form a pair (same axis value)."""
    n = len(x)
    if n == 0:
        return np.full(len(w), np.nan)
    others = [h for h in hyperparameters if h != axis]
    group = (data.groupby(others, dropna=False, sort=False).ngroup().to_numpy() if others
             else np.zeros(n, dtype=np.int64))
    # 1 and 1.0 compared as pandas shows them, a missing value (NaN) equal to itself (astype
    # keeps NaN a float in pandas 3, and NaN != NaN made two seeds of it a pair on this axis)
    value = data[axis].map(str).to_numpy()
    rows, cols, agree = [], [], []
    for g in np.unique(group):
        idx = np.flatnonzero(group == g)
        i, j = (a.ravel() for a in np.meshgrid(idx, idx, indexing="ij"))
        varies = value[i] != value[j]
        i, j = i[varies], j[varies]
        rows.append(i)
        cols.append(j)
        agree.append(np.sign(x[i] - x[j]) * np.sign(y[i] - y[j]))
    r, c = np.concatenate(rows), np.concatenate(cols)
    groups = group.max() + 1
    member = sparse.csr_matrix((np.ones(n), (np.arange(n), group)), shape=(n, groups))

    def per_group(values: np.ndarray) -> np.ndarray:  # (B, groups): Σ_pairs w_i w_j values
        matrix = sparse.csr_matrix((values, (r, c)), shape=(n, n))
        quad = np.asarray((matrix @ w.T).T) * w
        return np.asarray(member.T @ quad.T).T

    num, pairs = per_group(np.concatenate(agree)), per_group(np.ones(len(r)))
    with np.errstate(divide="ignore", invalid="ignore"):
        tau = np.where(pairs > 0, num / pairs, np.nan)
        finite = np.isfinite(tau)
        return np.where(finite.any(1), np.where(finite, tau, 0).sum(1) / finite.sum(1), np.nan)
