"""The learned predictors' held-out fit: predicted against actual target for models they did
not see in training, with their held-out scores."""

from __future__ import annotations

from html import escape

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from gengap.report.data import ReportData
from gengap.report.figures import PALETTE, hover_text, plotly_div
from gengap.report.page import Section, notes
from gengap.report.tables import html_table


def predictor_section(data: ReportData) -> Section:
    title = "Learned predictor, held out"
    evaluation = data.evaluation
    predictions = evaluation.predictions if evaluation else None
    if predictions is None or predictions.empty:
        return Section("predictor", title, notes(evaluation, "predictor"))
    body = [f'<p class="lead">Gradient-boosted trees predict {escape(data.target)} from each '
            "feature set, cross-validated: each point is a run predicted by a model fitted "
            "without it; on the diagonal the prediction is exact. R² and τ: mean over held-out "
            "folds (sd), and pooled over all out-of-fold predictions.</p>",
            notes(evaluation, "predictor")]
    scores = evaluation.predictor_scores
    if scores is not None and not scores.empty:
        body.append(html_table(scores, css_class="fit"))
    body.append(plotly_div(fit_figure(data, predictions)))
    return Section("predictor", title, "".join(body))


def fit_figure(data: ReportData, predictions: pd.DataFrame) -> go.Figure:
    fig = go.Figure()
    runs = data.frame.set_index("run_id") if "run_id" in data.frame else None
    for i, (name, group) in enumerate(predictions.groupby("predictor", sort=False)):
        if runs is not None and "run_id" in group:
            rows = runs.reindex(group["run_id"]).reset_index()
            hover = hover_text(rows, data.hyperparameters, {})
        else:
            hover = [""] * len(group)
        fig.add_trace(go.Scatter(
            x=group["actual"], y=group["predicted"], mode="markers", name=str(name),
            text=hover, marker={"color": PALETTE[i % len(PALETTE)], "size": 9, "opacity": 0.8},
            hovertemplate="%{text}<br>actual %{x:.4f}<br>predicted %{y:.4f}<extra></extra>",
        ))
    both = predictions[["actual", "predicted"]].to_numpy(dtype=float)
    both = both[np.isfinite(both)]
    if both.size:
        low, high = float(both.min()), float(both.max())
        fig.add_trace(go.Scatter(x=[low, high], y=[low, high], mode="lines", name="y = x",
                                 line={"color": "#888", "dash": "dot"}, hoverinfo="skip"))
    fig.update_xaxes(title=f"actual {data.target}")
    fig.update_yaxes(title=f"predicted {data.target}")
    fig.update_layout(height=460, margin={"l": 60, "r": 10, "t": 30, "b": 50})
    return fig
