"""The zoo at a glance: its grid, how many runs finished or failed, and how accuracy and the
gap are spread (static histograms read better than interactive ones here)."""

from __future__ import annotations

import math
from html import escape

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from gengap.number_format import counted
from gengap.report.data import ReportData, runs_with
from gengap.report.figures import PALETTE, png_img, short_names, value_label
from gengap.report.page import Section, note
from gengap.report.tables import definition_list, html_table

# More values than this and a numeric axis is drawn as a scatter, not one column per value.
MAX_CATEGORIES = 8
METRICS = {"train_acc": "train accuracy", "test_acc": "test accuracy", "gap": "gap (train − test)"}


def summary_section(data: ReportData) -> Section:
    frame = data.frame
    counts = status_counts(frame)
    body = [definition_list(_facts(data, counts))]
    body.append('<div class="cards">' + "".join(
        f'<div class="card{" bad" if key == "failed" and n else ""}">'
        f'<div class="v">{n}</div><div class="k">{key}</div></div>'
        for key, n in counts.items()
    ) + "</div>")
    if data.axes:
        body.append("<h3>Hyperparameters</h3>" + html_table(axes_table(data), css_class="fit"))
    failed = frame[frame["status"] == "failed"] if "status" in frame else frame.iloc[0:0]
    if not failed.empty:
        columns = ["run_id", *data.hyperparameters, "reason"]
        shown = failed[[c for c in columns if c in failed]].rename(
            columns=short_names(data.hyperparameters))
        body.append(f"<h3>Failed runs ({len(failed)})</h3>" + '<div class="scroll">'
                    + html_table(shown) + "</div>")
    done = data.done
    present = [m for m in METRICS if m in done]
    # a column of NaN only (no test set recorded, say) has nothing to draw
    plotted = [m for m in present if len(_finite(done[m]))]
    if done.empty:
        body.append(note("no finished runs yet: nothing to plot (run `gengap zoo train`)"))
    elif not plotted:
        body.append(note("the finished runs record no train or test accuracy: no histograms"))
    else:
        body.append("<h3>Accuracy and gap over the finished runs</h3>")
        body.append(png_img(_histograms(done, plotted), "histograms of accuracy and gap"))
        for metric in present:
            if metric not in plotted:
                body.append(note(f"{METRICS[metric]}: no finite value over the finished runs, "
                                 "not drawn"))
        if data.target in done and len(_finite(done[data.target])) and data.axes:
            body.append(f"<h3>{escape(data.target)} by each hyperparameter</h3>")
            body.append(png_img(_by_axis(done, data), f"{data.target} by hyperparameter"))
    return Section("summary", "Zoo", "".join(body))


def status_counts(frame: pd.DataFrame) -> dict[str, int]:
    """Runs in all and per status."""
    statuses = frame["status"].value_counts() if "status" in frame else pd.Series(dtype=int)
    return {"runs": len(frame),
            **{s: int(statuses.get(s, 0)) for s in ("done", "failed", "pending")}}


def axes_table(data: ReportData) -> pd.DataFrame:
    """One row per hyperparameter: its values and how many finished runs each has."""
    done = data.done
    rows = []
    for axis, values in data.axes.items():
        rows.append({
            "hyperparameter": axis,
            "values": ", ".join(value_label(v) for v in values),
            "count": len(values),
            "finished runs per value": ", ".join(
                str(int(runs_with(done, axis, v).sum())) if axis in done else "0"
                for v in values),
        })
    return pd.DataFrame(rows)


def _facts(data: ReportData, counts: dict[str, int]) -> list[tuple[str, str]]:
    sizes = [len(v) for v in data.axes.values()]
    if data.design == "grid" and sizes:
        grid = " × ".join(map(str, sizes)) + f" = {math.prod(sizes)} points"
    elif data.design == "grid":  # no axes: every seed trains the one point
        grid = "1 point"
    else:
        grid = f"{data.design} design"
    seeds = ", ".join(map(str, data.seeds)) or "–"
    return [
        ("zoo", escape(data.name)),
        ("folder", f"<code>{escape(data.source)}</code>"),
        ("design", escape(grid) + f" × {counted(len(data.seeds), 'seed')} ({escape(seeds)})"),
        ("measures stored", str(len(data.measures))),
        ("target", escape(data.target)),
    ]


def _finite(column: pd.Series) -> np.ndarray:
    """The finite numbers of ``column`` (NaN, infinities and non-numbers left out)."""
    values = pd.to_numeric(column, errors="coerce").to_numpy(dtype=float)
    return values[np.isfinite(values)]


def _histograms(done: pd.DataFrame, metrics: list[str]) -> Figure:
    """One histogram per metric of ``metrics``, each with at least one finite value."""
    fig = Figure(figsize=(3.6 * len(metrics), 2.6), layout="constrained")
    for i, metric in enumerate(metrics):
        ax = fig.add_subplot(1, len(metrics), i + 1)
        values = _finite(done[metric])
        spread = float(values.max() - values.min())
        span = None if spread > 0 else (float(values[0]) - 0.01, float(values[0]) + 0.01)
        ax.hist(values, bins=min(20, max(5, len(values) // 2)) if spread > 0 else 1,
                range=span, color=PALETTE[i], edgecolor="white")
        ax.axvline(float(np.median(values)), color="#333", lw=1, ls="--")
        ax.set_title(f"{METRICS[metric]}  (median {np.median(values):.3f})", fontsize=10)
        ax.set_ylabel("runs" if i == 0 else "")
        ax.spines[["top", "right"]].set_visible(False)
    return fig


def _by_axis(done: pd.DataFrame, data: ReportData) -> Figure:
    """The target against each hyperparameter's values: one dot per run, medians as bars."""
    axes = [a for a in data.hyperparameters if a in done]
    short = short_names(axes)
    columns = min(4, len(axes))
    rows = math.ceil(len(axes) / columns)
    fig = Figure(figsize=(3.4 * columns, 2.6 * rows), layout="constrained")
    rng = np.random.default_rng(0)  # the jitter only spreads dots; fixed so the page is stable
    for i, axis in enumerate(axes):
        ax = fig.add_subplot(rows, columns, i + 1)
        values = [v for v in data.axes[axis] if runs_with(done, axis, v).any()]
        if len(values) > MAX_CATEGORIES and all(isinstance(v, int | float) for v in values):
            # a continuous range of the random design: the target against the value
            xs = done[axis].to_numpy(dtype=float)
            ax.scatter(xs, done[data.target].to_numpy(dtype=float), s=14, color=PALETTE[0])
            if (xs > 0).all() and xs.max() / xs.min() > 100:
                ax.set_xscale("log")
            ax.set_title(short[axis], fontsize=10)
            ax.set_ylabel(data.target if i % columns == 0 else "")
            ax.spines[["top", "right"]].set_visible(False)
            continue
        for j, value in enumerate(values):
            ys = done.loc[runs_with(done, axis, value), data.target].to_numpy(dtype=float)
            xs = j + rng.uniform(-0.12, 0.12, len(ys))
            ax.scatter(xs, ys, s=14, color=PALETTE[j % len(PALETTE)], alpha=0.8)
            if len(ys):
                ax.hlines(np.median(ys), j - 0.25, j + 0.25, color="#333", lw=1.5)
        ax.set_xticks(range(len(values)), [value_label(v) for v in values], fontsize=8)
        ax.set_title(short[axis], fontsize=10)
        ax.set_ylabel(data.target if i % columns == 0 else "")
        ax.spines[["top", "right"]].set_visible(False)
    return fig
