"""Kendall's rank correlation and the granulated Kendall coefficient Ψ of Jiang et al. 2020.

Both take plain arrays or a DataFrame; nothing here knows about torch or the zoo.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.stats import kendalltau


def kendall(measure: Sequence[float], target: Sequence[float]) -> float:
    """Kendall's tau-b between a measure and a target (ties handled as in tau-b).

    NaN when either side is constant or fewer than two pairs are finite.
    """
    x, y = np.asarray(measure, dtype=float), np.asarray(target, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    if keep.sum() < 2:
        return float("nan")
    return float(kendalltau(x[keep], y[keep], variant="b").statistic)


def granulated_kendall(
    frame: pd.DataFrame, measure: str, target: str, hyperparameters: Sequence[str]
) -> tuple[float, dict[str, float]]:
    """Ψ and its per-axis terms ψ_i (Jiang et al. 2020, section 4.1).

    ψ_i is the mean, over every setting of the other hyperparameters, of Kendall's tau between
    ``measure`` and ``target`` among the runs where only hyperparameter i varies; Ψ is the mean
    of the ψ_i. Groups where tau is undefined (a constant measure or target, or a single run)
    are left out of the mean; an axis with no defined group gets NaN and is left out of Ψ.
    Runs that differ only in seed fall in the same group.
    """
    per_axis: dict[str, float] = {}
    for axis in hyperparameters:
        others = [h for h in hyperparameters if h != axis]
        groups = frame.groupby(others, dropna=False) if others else [((), frame)]
        taus = [kendall(g[measure], g[target]) for _, g in groups]
        taus = [t for t in taus if np.isfinite(t)]
        per_axis[axis] = float(np.mean(taus)) if taus else float("nan")
    defined = [v for v in per_axis.values() if np.isfinite(v)]
    return (float(np.mean(defined)) if defined else float("nan")), per_axis
