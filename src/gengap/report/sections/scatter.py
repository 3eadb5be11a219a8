"""The best measures against the target, one point per run, coloured by a hyperparameter chosen
from a menu; hovering shows the run."""

from __future__ import annotations

from html import escape

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from gengap.report.data import ReportData, runs_with
from gengap.report.figures import PALETTE, hover_text, plotly_div, short_names, value_label
from gengap.report.metrics import info, metric_columns
from gengap.report.page import Section, notes
from gengap.report.tables import number

# An axis with more values than this is coloured on a continuous scale (a random design's range).
MAX_CATEGORIES = 8


def scatter_section(data: ReportData, top: int = 4) -> Section:
    title = "Top measures against the " + data.target
    evaluation = data.evaluation
    ranking = evaluation.ranking if evaluation else None
    if ranking is None or ranking.empty:
        return Section("scatter", title, notes(evaluation, "ranking"))
    metrics = metric_columns(ranking)
    first = metrics[0]
    chosen = [m for m in ranking["measure"] if m in data.done][:top]
    lead = (f'<p class="lead">The {len(chosen)} best measures by {escape(info(first).label)}. '
            "Each point is a finished run; the menu picks the hyperparameter that colours "
            "them.</p>")
    figures = []
    for measure in chosen:
        row = ranking[ranking["measure"] == measure].iloc[0]
        scored = ", ".join(f"{info(m).label} {number(float(row[m]))}" for m in metrics[:2])
        figures.append(plotly_div(measure_scatter(data, measure, scored)))
    return Section("scatter", title, lead + '<div class="grid2">' + "".join(figures) + "</div>")


def measure_scatter(data: ReportData, measure: str, scored: str = "") -> go.Figure:
    """``measure`` (x) against the target (y) over the finished runs; ``scored`` goes in the
    title."""
    done = data.done
    done = done[np.isfinite(done[measure].to_numpy(dtype=float))]
    axes = [a for a in data.hyperparameters if a in done] or ["seed"]
    short = short_names(axes)
    hover = hover_text(done, data.hyperparameters,
                       {measure: measure, data.target: data.target, "test_acc": "test accuracy"})
    fig = go.Figure()
    visibility = []
    for k, axis in enumerate(axes):
        traces = _traces_for(done, measure, data.target, axis, data.axes.get(axis), hover)
        for trace in traces:
            trace.visible = k == 0
            trace.legendgroup = axis
            fig.add_trace(trace)
        visibility.append(len(traces))
    buttons = []
    for k, axis in enumerate(axes):
        visible = [i == k for i, n in enumerate(visibility) for _ in range(n)]
        buttons.append({"label": f"colour by {short[axis]}", "method": "update",
                        "args": [{"visible": visible}, {"legend.title.text": short[axis]}]})
    values = done[measure].to_numpy(dtype=float)
    log_x = bool(len(values) and (values > 0).all() and values.max() / values.min() > 1e3)
    fig.update_layout(
        title={"text": f"<b>{escape(measure)}</b><br><sup>{scored}</sup>", "x": 0.01,
               "y": 0.96},
        height=400, margin={"l": 60, "r": 10, "t": 80, "b": 50},
        legend={"title": {"text": short[axes[0]]}},
        updatemenus=[{"buttons": buttons, "x": 1.0, "xanchor": "right", "y": 1.04,
                      "yanchor": "bottom", "direction": "down"}] if len(axes) > 1 else [],
    )
    fig.update_xaxes(title=measure, type="log" if log_x else "linear")
    fig.update_yaxes(title=data.target)
    return fig


def _traces_for(done: pd.DataFrame, measure: str, target: str, axis: str,
                values: list | None, hover: list[str]) -> list[go.Scatter]:
    hover = np.asarray(hover, dtype=object)
    values = values if values is not None else sorted(done[axis].dropna().unique().tolist())
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
    if numeric and len(values) > MAX_CATEGORIES:
        return [go.Scatter(
            x=done[measure], y=done[target], mode="markers", text=hover, showlegend=False,
            hovertemplate="%{text}<extra></extra>",
            marker={"color": done[axis].astype(float), "colorscale": "Viridis", "size": 9,
                    "colorbar": {"title": {"text": axis.rsplit(".", 1)[-1]}}},
        )]
    traces = []
    for j, value in enumerate(values):
        mask = runs_with(done, axis, value).to_numpy()
        if not mask.any():
            continue
        traces.append(go.Scatter(
            x=done.loc[mask, measure], y=done.loc[mask, target], mode="markers",
            name=value_label(value), text=hover[mask], hovertemplate="%{text}<extra></extra>",
            marker={"color": PALETTE[j % len(PALETTE)], "size": 10, "opacity": 0.85,
                    "line": {"width": 0.5, "color": "#fff"}},
        ))
    return traces
