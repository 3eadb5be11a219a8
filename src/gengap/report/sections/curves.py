"""Training curves of chosen runs: loss and accuracy per epoch, train solid and test dashed."""

from __future__ import annotations

from html import escape

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from gengap.number_format import counted
from gengap.report.data import ReportData
from gengap.report.figures import PALETTE, plotly_div, short_names, value_label
from gengap.report.page import Section, note


def curves_section(data: ReportData) -> Section:
    title = "Training curves"
    histories = {run_id: h for run_id, h in data.histories.items() if h}
    if not histories:
        why = ("not computed: no finished run has a per-epoch history"
               if not data.histories else "the chosen runs recorded no epochs")
        return Section("curves", title, note(why))
    chosen = ("as chosen with <code>--runs</code>" if data.curves_chosen else
              f"those with the smallest, the largest and evenly spaced {escape(data.target)}; "
              "choose others with <code>--runs</code>")
    lead = (f'<p class="lead">{counted(len(histories), "run")} ({chosen}). Solid: training '
            "split; dashed: test split.</p>")
    return Section("curves", title, lead + plotly_div(curves_figure(data, histories)))


def run_label(data: ReportData, run_id: str) -> str:
    """``1a2b3c4d  width=8 lr=0.05``: the short id and the run's hyperparameters."""
    frame = data.frame
    row = frame[frame["run_id"] == run_id]
    short = short_names(data.hyperparameters)
    parts = [run_id[:8]]
    if not row.empty:
        parts += [f"{short[a]}={value_label(row.iloc[0][a])}" for a in data.hyperparameters
                  if a in row]
    return " ".join(parts)


def curves_figure(data: ReportData, histories: dict[str, list[dict[str, float]]]) -> go.Figure:
    longest = max((len(h) for h in histories.values()), default=0)
    fig = make_subplots(rows=1, cols=2, subplot_titles=["cross-entropy", "accuracy"],
                        horizontal_spacing=0.08)
    for i, (run_id, history) in enumerate(histories.items()):
        table = pd.DataFrame(history)
        label = run_label(data, run_id)
        colour = PALETTE[i % len(PALETTE)]
        for col, metric in ((1, "loss"), (2, "acc")):
            for split, dash in (("train", "solid"), ("test", "dash")):
                column = f"{split}_{metric}"
                if column not in table:
                    continue
                fig.add_trace(go.Scatter(
                    x=table["epoch"], y=table[column],
                    mode="lines+markers" if longest <= 30 else "lines",
                    name=label, legendgroup=run_id, showlegend=(col == 1 and split == "train"),
                    line={"color": colour, "dash": dash, "width": 2}, marker={"size": 4},
                    hovertemplate=(f"{escape(label)}<br>epoch %{{x}}<br>{split} {metric} "
                                   "= %{y:.4f}<extra></extra>"),
                ), row=1, col=col)
    fig.update_yaxes(type="log", row=1, col=1)
    fig.update_xaxes(title="epoch", dtick=1 if longest <= 12 else None)
    fig.update_layout(height=430, margin={"l": 60, "r": 10, "t": 40, "b": 50},
                      legend={"orientation": "h", "y": -0.22, "x": 0})
    return fig
