"""The granulated view: Kendall's tau of each measure along each hyperparameter with the others
held fixed (the ψ terms of Jiang et al.'s Ψ), as a heatmap."""

from __future__ import annotations

from html import escape

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from gengap.report.data import ReportData
from gengap.report.figures import plotly_div, short_names
from gengap.report.metrics import axis_columns, info
from gengap.report.page import Section, note, notes


def granulated_section(data: ReportData) -> Section:
    evaluation = data.evaluation
    ranking = evaluation.ranking if evaluation else None
    title = "Kendall τ per hyperparameter"
    if ranking is None or ranking.empty:
        return Section("granulated", title, notes(evaluation, "ranking"))
    columns = axis_columns(ranking)
    if not columns:
        return Section("granulated", title, note(
            "not computed: the zoo has no hyperparameter axes, so there is nothing to hold fixed"))
    if not np.isfinite(ranking[list(columns)].to_numpy(dtype=float)).any():
        # every cell blank: say why instead of an empty grid
        return Section("granulated", title, note(
            "not computed: among the finished runs no group has two runs that differ in one "
            "hyperparameter only (too few finished runs per setting, or failed ones in the way)"))
    lead = (
        '<p class="lead">Cell (measure, hyperparameter): the mean Kendall τ between the measure '
        f"and <b>{escape(data.target)}</b> over the groups of runs in which only that "
        "hyperparameter varies. Ψ is the mean of a row. Blank: undefined (no group where both "
        "vary).</p>"
    )
    return Section("granulated", title,
                   lead + plotly_div(heatmap(ranking, columns, data.target)))


def heatmap(ranking: pd.DataFrame, columns: dict[str, str], target: str = "gap") -> go.Figure:
    """Measures (best Ψ first) × axes, plus the Ψ column, coloured from −1 to 1."""
    ascending = not info("psi", target).higher_is_better
    ordered = ranking.sort_values("psi", ascending=ascending, na_position="last", kind="stable")
    short = short_names(list(columns.values()))
    names = [short[a] for a in columns.values()] + ["Ψ"]
    z = ordered[[*columns, "psi"]].to_numpy(dtype=float)
    text = np.where(np.isfinite(z), np.vectorize(lambda v: f"{v:.2f}")(np.nan_to_num(z)), "")
    measures = ordered["measure"].tolist()
    fig = go.Figure(go.Heatmap(
        z=z, x=names, y=measures, text=text, texttemplate="%{text}", textfont={"size": 11},
        colorscale="RdBu", reversescale=True, zmin=-1, zmax=1, zmid=0,
        colorbar={"title": {"text": "τ"}, "thickness": 14, "len": 260, "lenmode": "pixels",
                  "y": 1, "yanchor": "top"},
        hovertemplate="%{y}<br>%{x}: τ = %{z:.3f}<extra></extra>", xgap=2, ygap=1,
    ))
    fig.update_yaxes(autorange="reversed", tickfont={"size": 11})
    fig.update_xaxes(side="top")
    fig.update_layout(height=max(300, 22 * len(measures) + 120),
                      width=min(1150, 320 + 110 * len(names)),
                      margin={"l": 10, "r": 10, "t": 60, "b": 20})
    return fig
