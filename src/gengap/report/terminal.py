"""What the terminal shows of a report: small tables as DataFrames (the CLI draws them)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from gengap.report.data import ReportData
from gengap.report.figures import short_names
from gengap.report.metrics import interval, metric_columns
from gengap.report.tables import number


def summary_frame(data: ReportData) -> pd.DataFrame:
    """One row per status with its count, and the median accuracies and target of done runs."""
    frame = data.frame
    rows = []
    for status in ("done", "failed", "pending"):
        runs = frame[frame["status"] == status] if "status" in frame else frame.iloc[0:0]
        row = {"status": status, "runs": len(runs)}
        for column in ("train_acc", "test_acc", data.target):
            if column in runs and status == "done" and len(runs):
                row[f"median {column}"] = float(runs[column].median())
            else:
                row[f"median {column}"] = float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


def ranking_frame(data: ReportData, top: int = 10) -> pd.DataFrame:
    """The first ``top`` measures of the ranking: overall metrics and the per-axis ψ terms
    (short axis names), empty when no ranking was computed."""
    ranking = data.evaluation.ranking if data.evaluation else None
    if ranking is None or ranking.empty:
        return pd.DataFrame()
    short = short_names(data.hyperparameters)
    per_axis = {f"psi[{a}]": f"ψ {short[a]}" for a in data.hyperparameters
                if f"psi[{a}]" in ranking}
    metrics = metric_columns(ranking)
    shown = ranking[["measure", *metrics, *per_axis]].head(top).rename(columns=per_axis)
    for metric in metrics:  # an interval goes beside its value: "0.429 [-0.26, 1.00]"
        bounds = interval(ranking.head(top), metric)
        if bounds is not None:
            shown[metric] = [
                number(v) + (f" [{number(lo, 2)}, {number(hi, 2)}]" if np.isfinite(lo) else "")
                for v, lo, hi in zip(shown[metric], *bounds, strict=True)
            ]
    return shown
