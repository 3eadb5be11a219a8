"""How the report names and reads each metric column of a ranking table."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from gengap.evaluate.targets import ORIENTATION


@dataclass(frozen=True)
class MetricInfo:
    label: str
    higher_is_better: bool = True
    bounds: tuple[float, float] | None = None
    primary: bool = True  # drawn in the ranking figure, not only listed in the table


KNOWN = {
    "tau": MetricInfo("Kendall τ", True, (-1.0, 1.0)),
    "psi": MetricInfo("granulated Ψ", True, (-1.0, 1.0)),
    "cmi": MetricInfo("CMI ×100", True, (0.0, 100.0)),
    "robust_mean": MetricInfo("sign-error mean", False, (0.0, 1.0)),
    "robust_p90": MetricInfo("sign-error p90", False, (0.0, 1.0), primary=False),
    "robust_max": MetricInfo("sign-error max", False, (0.0, 1.0), primary=False),
}
# Columns of a ranking table that describe a measure or an interval rather than score it.
NOT_METRICS = {"measure", "n", "rank", "robust_envs"}


def metric_columns(ranking: pd.DataFrame) -> list[str]:
    """The overall metrics of a ranking table (``tau``, ``psi``, ``cmi``, ``robust_mean``,
    ...), known ones first; not intervals, per-axis or per-size terms, nor bookkeeping."""
    found = [
        c for c in ranking.columns
        if c not in NOT_METRICS and "[" not in c and not c.endswith(("_low", "_high"))
        and pd.api.types.is_numeric_dtype(ranking[c])
    ]
    return [c for c in KNOWN if c in found] + [c for c in found if c not in KNOWN]


def axis_columns(ranking: pd.DataFrame) -> dict[str, str]:
    """``psi[<axis>]`` column -> axis."""
    return {c: c[4:-1] for c in ranking.columns if c.startswith("psi[") and c.endswith("]")}


def info(metric: str, target: str = "gap") -> MetricInfo:
    """What ``metric`` is called and which way is better when ranking ``target`` (a good
    measure's tau with test accuracy is negative)."""
    known = KNOWN.get(metric, MetricInfo(metric, primary=False))
    if metric in ("tau", "psi") and ORIENTATION.get(target, 1) < 0:
        return MetricInfo(known.label, False, known.bounds, known.primary)
    return known


def interval(ranking: pd.DataFrame, metric: str) -> tuple[pd.Series, pd.Series] | None:
    """The ``<metric>_low`` and ``<metric>_high`` columns, when the table has them."""
    low, high = f"{metric}_low", f"{metric}_high"
    if low in ranking and high in ranking:
        return ranking[low], ranking[high]
    return None
