"""The measures ranked by each metric, with confidence intervals where they were computed."""

from __future__ import annotations

from html import escape

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from gengap.report.data import ReportData
from gengap.report.figures import PALETTE, plotly_div
from gengap.report.metrics import info, interval, metric_columns
from gengap.report.page import Section, notes
from gengap.report.tables import html_table, number


def ranking_section(data: ReportData) -> Section:
    evaluation = data.evaluation
    ranking = evaluation.ranking if evaluation else None
    if ranking is None or ranking.empty:
        return Section("ranking", "Measures ranked", notes(evaluation, "ranking"))
    metrics = metric_columns(ranking)
    body = [
        f'<p class="lead">Each measure scored against <b>{escape(data.target)}</b> over '
        f"{len(data.done)} finished runs; brackets: 95% bootstrap intervals. Click a column "
        "to rank by that metric, or pick the order of the figure from its menu.</p>",
        notes(evaluation, "intervals", "cmi", "robust"),
        _table(ranking, metrics, data.target),
        plotly_div(forest(ranking, [m for m in metrics if info(m).primary], data.target)),
    ]
    return Section("ranking", "Measures ranked", "".join(body))


def _table(ranking: pd.DataFrame, metrics: list[str], target: str) -> str:
    view = ranking.reset_index(drop=True)
    view.insert(0, "rank", np.arange(1, len(view) + 1))
    shown = view[["rank", "measure", *metrics, *[c for c in ("n",) if c in view]]]
    cells = {}
    for metric in metrics:
        bounds = interval(view, metric)
        texts = []
        for i, value in enumerate(shown[metric]):
            text = escape(number(value))
            if bounds is not None and np.isfinite(bounds[0][i]) and np.isfinite(value):
                text += (f' <span class="ci">[{number(bounds[0][i], 2)}, '
                         f"{number(bounds[1][i], 2)}]</span>")
            texts.append(text)
        cells[info(metric, target).label] = texts
    renamed = shown.rename(columns={m: info(m, target).label for m in metrics})
    return '<div class="scroll">' + html_table(renamed, sortable=True, cells=cells) + "</div>"


def forest(ranking: pd.DataFrame, metrics: list[str], target: str) -> go.Figure:
    """One panel per metric, measures down the side with their intervals; a menu re-orders
    the measures by any metric."""
    measures = ranking["measure"].tolist()
    fig = make_subplots(rows=1, cols=len(metrics), shared_yaxes=True, horizontal_spacing=0.03,
                        subplot_titles=[info(m, target).label for m in metrics])
    for i, metric in enumerate(metrics):
        meta = info(metric, target)
        values = ranking[metric].to_numpy(dtype=float)
        bounds = interval(ranking, metric)
        error = None
        if bounds is not None:
            low, high = (b.to_numpy(dtype=float) for b in bounds)
            error = {"type": "data", "symmetric": False, "array": high - values,
                     "arrayminus": values - low, "thickness": 1.2, "width": 3}
        fig.add_trace(go.Scatter(
            x=values, y=measures, mode="markers", name=meta.label, showlegend=False,
            marker={"color": PALETTE[i % len(PALETTE)], "size": 8}, error_x=error,
            hovertemplate="%{y}<br>" + meta.label + " = %{x:.3f}<extra></extra>",
        ), row=1, col=i + 1)
        if meta.bounds:
            pad = 0.04 * (meta.bounds[1] - meta.bounds[0])
            fig.update_xaxes(range=[meta.bounds[0] - pad, meta.bounds[1] + pad],
                             row=1, col=i + 1)
        if meta.bounds and meta.bounds[0] < 0 < meta.bounds[1]:
            fig.add_vline(x=0, line={"color": "#999", "width": 1}, row=1, col=i + 1)
    orders = {m: order_by(ranking, m, target) for m in metrics}
    y_keys = [f"yaxis{'' if i == 0 else i + 1}" for i in range(len(metrics))]
    buttons = [
        {"label": f"order by {info(m, target).label}", "method": "relayout",
         "args": [{f"{k}.categoryarray": order for k in y_keys}]}
        for m, order in orders.items()
    ]
    fig.update_yaxes(categoryorder="array", categoryarray=orders[metrics[0]],
                     autorange="reversed", tickfont={"size": 11})
    fig.update_xaxes(side="top", showline=True)
    fig.update_layout(
        height=max(320, 20 * len(measures) + 150),
        margin={"l": 10, "r": 10, "t": 110, "b": 20},
        updatemenus=[{"buttons": buttons, "x": 0, "xanchor": "left", "y": 1.0,
                      "yanchor": "bottom", "pad": {"b": 62}, "direction": "down"}]
        if len(metrics) > 1 else [],
    )
    fig.update_annotations(yshift=28)  # the panel titles sit above the top axis labels
    return fig


def order_by(ranking: pd.DataFrame, metric: str, target: str = "gap") -> list[str]:
    """Measures best first by ``metric`` (undefined values last)."""
    ascending = not info(metric, target).higher_is_better
    ordered = ranking.sort_values(metric, ascending=ascending, na_position="last", kind="stable")
    return ordered["measure"].tolist()
