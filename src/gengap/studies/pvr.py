"""Pointer value retrieval (Zhang, Raghu, Kleinberg & Bengio 2021) on the embedded vector
task: test accuracy against training-set size for windows 1-4 and each aggregation, per
architecture, and the accuracy on held-out window patterns (the distribution shift) beside the
in-distribution accuracy of the same networks."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from gengap.data import load
from gengap.specs import ArchSpec, DataSpec, TrainSpec, ZooSpec
from gengap.studies.common import chance, seed_mean
from gengap.studies.registry import register_study
from gengap.studies.runner import (
    Clock,
    StudyOptions,
    StudyResult,
    failed_runs,
    finished_frame,
    pick,
    train_seconds,
    train_zoos,
)
from gengap.train import evaluate_model
from gengap.zoo import Store, load_model

PUBLISHED = (
    "Zhang, Raghu, Kleinberg & Bengio 2021 (abstract, verified): large variations in "
    "performance across dataset sizes, architectures and task complexity; distribution shift "
    "and higher functional complexity reveal subtle failures and surprising successes. "
    "Recalled, not verified against the paper's figures: window 1 (plain retrieval) is learned "
    "from modest data; accuracy against training-set size degrades sharply as the window "
    "grows; mod_sum (every value in the window matters) is hardest and needs orders of "
    "magnitude more data (towards 10^7 examples for large windows), min, max and median are "
    "easier (partly because their labels are skewed: read accuracies against the majority "
    "class); on held-out window patterns generalization is partial and grows with data."
)

AGGREGATIONS = ("mod_sum", "min", "max", "median", "majority")
FAMILIES = ("transformer", "mlp")


def pvr_zoos(scale: str, families: tuple[str, ...]) -> list[ZooSpec]:
    """Per architecture family: one zoo over windows of 2 or more, aggregations and
    training-set sizes; one retrieval zoo for window 1 (over sizes only: with one value every
    aggregation gives the same label, so one run stands for all of them); and one holdout zoo
    (window 2, one held-out permutation, shifted test split)."""
    sizes = pick(scale, (200, 1000), (1000, 4000, 16000), (1000, 10000, 100000))
    windows = pick(scale, (1, 2), (1, 2, 3, 4), (1, 2, 3, 4))
    aggregations = pick(scale, ("min",), AGGREGATIONS, AGGREGATIONS)
    seeds = pick(scale, (0,), (0,), (0, 1))
    arch = {
        "transformer": ArchSpec(family="transformer", width=int(pick(scale, 32, 64, 128)),  # type: ignore[arg-type]
                                depth=int(pick(scale, 1, 2, 2)), heads=4),  # type: ignore[arg-type]
        "mlp": ArchSpec(family="mlp", width=int(pick(scale, 128, 512, 512)), depth=3),  # type: ignore[arg-type]
    }
    train = TrainSpec(
        optimizer="adamw", lr=1e-3, weight_decay=1e-2, batch_size=128,
        max_epochs=int(pick(scale, 10, 40, 100)), target_ce=0.01,  # type: ignore[arg-type]
        warmup_epochs=1.0,
    )
    n_test = int(pick(scale, 300, 2000, 10000))  # type: ignore[arg-type]
    zoos = []
    longer = tuple(w for w in windows if w > 1)  # type: ignore[attr-defined]
    for family in families:
        data = DataSpec(name="pvr-vector", options={"n_test": n_test})
        if 1 in windows:  # type: ignore[operator]
            zoos.append(ZooSpec(
                name=f"retrieval_{family}", arch=arch[family], train=train, seeds=seeds,  # type: ignore[arg-type]
                data=data.model_copy(update={"options": {"n_test": n_test, "window": 1}}),
                axes={"data.options.n_train": sizes},
            ))
        zoos.append(ZooSpec(
            name=f"pvr_{family}", data=data, arch=arch[family], train=train, seeds=seeds,  # type: ignore[arg-type]
            axes={"data.options.window": longer, "data.options.aggregation": aggregations,
                  "data.options.n_train": sizes},
        ))
        held = DataSpec(name="pvr-vector", options={"n_test": n_test, "window": 2,
                                                      "aggregation": "mod_sum", "holdout": 1})
        zoos.append(ZooSpec(
            name=f"holdout_{family}", data=held, arch=arch[family], train=train, seeds=seeds,  # type: ignore[arg-type]
            axes={"data.options.n_train": sizes},
        ))
    return zoos


def pvr_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Test accuracy per family, window, aggregation and training-set size (seed means), with
    the majority-class baseline of each task (from 20,000 fresh sequences) and the accuracy
    above it. The window-1 runs appear under every aggregation of the grid."""
    grid = frame[frame["zoo"].str.startswith("pvr_")].copy()
    grid["family"] = grid["zoo"].str.removeprefix("pvr_")
    grid = grid.rename(columns={"data.options.window": "window",
                                "data.options.aggregation": "aggregation",
                                "data.options.n_train": "n_train"})
    retrieval = frame[frame["zoo"].str.startswith("retrieval_")].rename(
        columns={"data.options.n_train": "n_train"})
    copies = []
    for aggregation in dict.fromkeys(grid["aggregation"]):
        copy = retrieval.assign(family=retrieval["zoo"].str.removeprefix("retrieval_"),
                                window=1, aggregation=aggregation)
        copies.append(copy)
    grid = pd.concat([*copies, grid], ignore_index=True)
    # Other zoos lack these axes, so the concatenated frame holds them as floats.
    grid = grid.astype({"window": int, "n_train": int})
    table = seed_mean(grid, ["family", "window", "aggregation", "n_train"],
                      ["train_acc", "test_acc", "epochs"])
    baselines = {
        (w, a): chance(DataSpec(name="pvr-vector", options={"window": int(w), "aggregation": a,
                                                              "n_train": 20000, "n_test": 20000}))
        for w, a in table[["window", "aggregation"]].drop_duplicates().itertuples(index=False)
    }
    table["chance"] = [baselines[(w, a)] for w, a in zip(table.window, table.aggregation,
                                                          strict=True)]
    table["above_chance"] = table["test_acc"] - table["chance"]
    return table


def holdout_table(stores: dict[str, Store], frame: pd.DataFrame) -> pd.DataFrame:
    """For each holdout run: accuracy on fresh in-distribution sequences and on sequences whose
    window shows only the held-out pattern (the shift), by family and training-set size."""
    rows = []
    for row in frame[frame["zoo"].str.startswith("holdout_") & (frame["status"] == "done")] \
            .itertuples():
        store = stores[row.zoo]
        run = next(r for r in store.runs() if r.run_id == row.run_id)
        shifted = load(run.data)
        options = dict(run.data.options) | {"shifted_test": False}
        plain = load(run.data.model_copy(update={"options": options}))
        model = load_model(store, run, shifted)
        rows.append({
            "family": row.zoo.removeprefix("holdout_"),
            "n_train": run.data.options["n_train"],
            "seed": run.seed,
            "train_acc": row.train_acc,
            "in_distribution_acc": evaluate_model(model, plain.x_test, plain.y_test)[1],
            "shifted_acc": evaluate_model(model, shifted.x_test, shifted.y_test)[1],
        })
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    out = table.groupby(["family", "n_train"], sort=True)[
        ["train_acc", "in_distribution_acc", "shifted_acc"]].mean().reset_index()
    return out


def pvr_figures(table: pd.DataFrame, holdout: pd.DataFrame) -> list[go.Figure]:
    """Test accuracy above chance against training-set size (log axis): one panel per
    aggregation, one line per window and family; and in-distribution against shifted accuracy
    of the holdout runs."""
    aggregations = list(dict.fromkeys(table["aggregation"]))
    curves = make_subplots(rows=1, cols=len(aggregations), subplot_titles=aggregations,
                           shared_yaxes=True)
    dashes = {"transformer": "solid", "mlp": "dash"}
    for col, aggregation in enumerate(aggregations, start=1):
        part = table[table["aggregation"] == aggregation]
        for (family, window), line in part.groupby(["family", "window"]):
            curves.add_trace(go.Scatter(
                x=line["n_train"], y=line["test_acc"], mode="lines+markers",
                name=f"{family}, window {window}", legendgroup=f"{family}{window}",
                showlegend=col == 1, line={"dash": dashes.get(str(family), "dot")},
            ), row=1, col=col)
        curves.update_xaxes(type="log", title_text="training sequences", row=1, col=col)
    curves.update_yaxes(title_text="test accuracy", range=[0, 1.02], row=1, col=1)
    curves.update_layout(title="PVR: test accuracy against training-set size")
    shift = go.Figure()
    for family, part in holdout.groupby("family") if not holdout.empty else []:
        shift.add_trace(go.Scatter(x=part["n_train"], y=part["in_distribution_acc"],
                                   mode="lines+markers", name=f"{family}: in distribution"))
        shift.add_trace(go.Scatter(x=part["n_train"], y=part["shifted_acc"],
                                   mode="lines+markers", name=f"{family}: held-out patterns"))
    shift.update_layout(title="PVR holdout (window 2, mod_sum, one held-out permutation)",
                        xaxis_title="training sequences", xaxis_type="log",
                        yaxis_title="test accuracy", yaxis_range=[0, 1.02])
    return [curves, shift]


def findings(table: pd.DataFrame, holdout: pd.DataFrame) -> list[str]:
    out = []
    for (family, aggregation), part in table.groupby(["family", "aggregation"], sort=False):
        largest = part[part["n_train"] == part["n_train"].max()].sort_values("window")
        out.append(
            f"{family}, {aggregation}, {int(largest.n_train.iloc[0])} training sequences: "
            + ", ".join(f"window {w}: {a:.3f} (chance {c:.3f})" for w, a, c in
                        zip(largest.window, largest.test_acc, largest.chance, strict=True))
        )
    seen = set()
    for (family, window, aggregation), part in table.groupby(["family", "window",
                                                              "aggregation"], sort=False):
        part = part.sort_values("n_train")
        # window 1 is one run per size, repeated under every aggregation: say it once
        label = "any aggregation" if window == 1 else aggregation
        if len(part) > 1 and window == table["window"].min() and (family, label) not in seen:
            seen.add((family, label))
            out.append(
                f"{family}, window {window}, {label}: test accuracy "
                + " → ".join(f"{a:.3f}" for a in part.test_acc)
                + f" as the training set grows {int(part.n_train.iloc[0])} → "
                f"{int(part.n_train.iloc[-1])}"
            )
    for row in holdout.itertuples() if not holdout.empty else []:
        out.append(
            f"holdout, {row.family}, {row.n_train} training sequences: in distribution "
            f"{row.in_distribution_acc:.3f}, held-out patterns {row.shifted_acc:.3f}"
        )
    return out


@register_study("pvr", "pointer value retrieval: accuracy vs data, window, aggregation, shift")
def run_pvr(options: StudyOptions) -> StudyResult:
    """Train the PVR zoos at ``options.scale``; tabulate accuracy and the holdout shift."""
    clock = Clock()
    zoos = pvr_zoos(options.scale, FAMILIES)
    stores = train_zoos(zoos, options)
    frame = finished_frame(stores)
    table = pvr_table(frame)
    held = holdout_table(stores, frame)
    return StudyResult(
        name="pvr", scale=options.scale, title="Pointer value retrieval (vector task)",
        table=table, figures=pvr_figures(table, held), published=PUBLISHED,
        found=findings(table, held), seconds=clock.seconds, train_seconds=train_seconds(frame),
        runs=len(frame), folder=options.out, extra_tables={"holdout": held},
        notes=failed_runs(frame),
    )
