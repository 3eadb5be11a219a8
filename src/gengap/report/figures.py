"""Figures as HTML: interactive plotly divs (the library's JS is inlined once per page by
:mod:`gengap.report.page`) and static matplotlib figures as inline base64 PNG images."""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from matplotlib.figure import Figure

# No logo, no round trip to a plotly server; the PNG download stays (it works offline).
PLOTLY_CONFIG = {"displaylogo": False, "responsive": True}
# Categorical colours that stay apart on a white page (Okabe–Ito, colour-blind safe).
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442",
           "#000000"]


def plotly_div(fig: go.Figure) -> str:
    """A plotly figure as a ``<div>`` plus its drawing script (plotly.js not included)."""
    fig.update_layout(template="plotly_white", font={"size": 13})
    return '<div class="figure">' + fig.to_html(
        full_html=False, include_plotlyjs=False, config=PLOTLY_CONFIG
    ) + "</div>"


def png_img(fig: Figure, alt: str) -> str:
    """A matplotlib figure (made without pyplot, so no global state) as an inline ``<img>``."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return (
        f'<figure class="static"><img alt="{escape(alt)}" '
        f'src="data:image/png;base64,{data}"></figure>'
    )


def short_names(names: Sequence[str]) -> dict[str, str]:
    """``arch.width`` -> ``width`` where the last part is unique, else the full dotted name."""
    last = [name.rsplit(".", 1)[-1] for name in names]
    return {name: (tail if last.count(tail) == 1 else name)
            for name, tail in zip(names, last, strict=True)}


def hover_text(frame: pd.DataFrame, axes: Sequence[str], extra: Mapping[str, str]) -> list[str]:
    """One hover label per run: its id, hyperparameters and ``extra`` columns (name -> label)."""
    short = short_names(list(axes))
    texts = []
    for _, row in frame.iterrows():
        parts = [f"run {escape(str(row.get('run_id', '')))}"]
        parts += [f"{escape(short[a])} = {escape(_plain(row.get(a)))}" for a in axes]
        if "seed" in row and "seed" not in axes:
            parts.append(f"seed = {escape(_plain(row['seed']))}")
        parts += [f"{escape(label)} = {escape(_plain(row.get(c)))}" for c, label in extra.items()]
        texts.append("<br>".join(parts))
    return texts


def value_label(value: Any) -> str:
    """A hyperparameter value as a legend or tick shows it (floats to 4 significant digits)."""
    return _plain(value)


def _plain(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
