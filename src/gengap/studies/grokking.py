"""Grokking (Power et al. 2022): modular division x/y mod p learned by a small transformer with
AdamW and weight decay 1. Training accuracy saturates long before validation accuracy rises;
the delay grows as the training fraction shrinks."""

from __future__ import annotations

import math

import pandas as pd
import plotly.graph_objects as go

from gengap.specs import ArchSpec, DataSpec, TrainSpec, ZooSpec
from gengap.studies.registry import register_study
from gengap.studies.runner import (
    Clock,
    StudyOptions,
    StudyResult,
    failed_runs,
    finished_frame,
    histories,
    pick,
    train_seconds,
    train_zoos,
)

PUBLISHED = (
    "Power et al. 2022 (Fig. 1, division mod 97, 50% of the equations for training, 2-layer "
    "width-128 transformer, AdamW lr 1e-3, weight decay 1, batch 512): training accuracy is "
    "near perfect in under 10^3 steps, while validation accuracy shows very little evidence "
    "of generalization until 10^5 steps and reaches that level close to 10^6 steps. The "
    "steps until validation reaches 99% grow quickly as the training fraction shrinks (on S5, "
    "near 25-30% of the data, 1% less data costs 40-50% more time); steps to fit the training "
    "set stay in the 10^3-10^4 range."
)

LEVEL = 0.99  # accuracy that counts as fitted (train) or generalized (validation)


def grokking_zoos(scale: str) -> list[ZooSpec]:
    """One zoo over the training fraction: x/y mod p (p = 97 beyond smoke), every step budget
    spent (no cross-entropy stopping), AdamW with weight decay 1, both splits evaluated at 20
    log-spaced epochs per decade (the curves' log step axis; evaluating all 9,312 equations
    after every 10-step epoch would cost as much as the training).

    ``default`` is sized for a CPU: one layer instead of the paper's two (the cheaper recipe of
    follow-up work, see the reference notes) and 8,000 steps, enough for fractions 0.3-0.5;
    ``full`` is the paper's setting (two layers, 10^5 steps, 3 seeds)."""
    p = int(pick(scale, 23, 97, 97))  # type: ignore[arg-type]
    fractions = pick(scale, (0.5, 0.8), (0.3, 0.4, 0.5), (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8))
    data = DataSpec(name="modular", options={"p": p, "op": "div"})
    arch = ArchSpec(family="transformer", width=int(pick(scale, 32, 128, 128)),  # type: ignore[arg-type]
                    depth=int(pick(scale, 1, 1, 2)), heads=4)  # type: ignore[arg-type]
    train = TrainSpec(
        optimizer="adamw", lr=float(pick(scale, 3e-3, 1e-3, 1e-3)),  # type: ignore[arg-type]
        weight_decay=1.0, batch_size=int(pick(scale, 64, 512, 512)),  # type: ignore[arg-type]
        max_steps=int(pick(scale, 300, 8000, 100000)),  # type: ignore[arg-type]
        max_epochs=10**7, target_ce=0.0, warmup_epochs=1.0, eval_per_decade=20,
    )
    return [ZooSpec(name="grokking", data=data, arch=arch, train=train,
                    seeds=pick(scale, (0,), (0,), (0, 1, 2)),  # type: ignore[arg-type]
                    axes={"data.options.train_split": fractions})]


def first_step(history: pd.DataFrame, column: str, level: float = LEVEL) -> float:
    """The first recorded step at which ``column`` reached ``level`` (NaN when never)."""
    hit = history[history[column] >= level]
    return float(hit["steps"].iloc[0]) if len(hit) else math.nan


def value_at(history: pd.DataFrame, column: str, step: float) -> float:
    """``column`` at the evaluation of ``step`` (NaN when ``step`` is NaN)."""
    if math.isnan(step):
        return math.nan
    return float(history.loc[history["steps"] == step, column].iloc[0])


def grokking_table(frame: pd.DataFrame, curves: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per run: training fraction, seed, steps to 99% train and validation accuracy,
    their ratio, the validation accuracy when training reached 99%, the best and final
    validation accuracy and the final training accuracy."""
    rows = []
    for row in frame[frame["status"] == "done"].itertuples():
        history = curves[row.run_id]
        to_train = first_step(history, "train_acc")
        to_val = first_step(history, "test_acc")
        rows.append({
            "train_fraction": frame.loc[row.Index, "data.options.train_split"],
            "seed": row.seed,
            "steps": row.steps,
            "steps_to_train_99": to_train,
            "steps_to_val_99": to_val,
            "delay": to_val / to_train if to_train > 0 else math.nan,
            "val_acc_at_train_99": value_at(history, "test_acc", to_train),
            "final_train_acc": row.train_acc,
            "best_val_acc": float(history["test_acc"].max()),
            "final_val_acc": row.test_acc,
        })
    return pd.DataFrame(rows).sort_values(["train_fraction", "seed"]).reset_index(drop=True)


def grokking_figures(table: pd.DataFrame, curves: dict[str, pd.DataFrame],
                     labels: dict[str, str]) -> list[go.Figure]:
    """Train and validation accuracy against steps on a log axis (one pair of lines per run),
    and steps to 99% (train and validation) against the training fraction."""
    acc = go.Figure()
    for run_id, history in curves.items():
        name = labels.get(run_id, run_id)
        acc.add_trace(go.Scatter(x=history["steps"], y=history["train_acc"], mode="lines",
                                 name=f"{name} train", line={"dash": "dot"}))
        acc.add_trace(go.Scatter(x=history["steps"], y=history["test_acc"], mode="lines",
                                 name=f"{name} validation"))
    acc.update_layout(title="Training and validation accuracy (division mod p)",
                      xaxis_title="optimization steps", xaxis_type="log",
                      yaxis_title="accuracy", yaxis_range=[0, 1.02])
    steps = go.Figure()
    means = table.groupby("train_fraction")[["steps_to_train_99", "steps_to_val_99"]].median()
    steps.add_trace(go.Scatter(x=means.index, y=means["steps_to_train_99"],
                               mode="lines+markers", name="steps to 99% train"))
    steps.add_trace(go.Scatter(x=means.index, y=means["steps_to_val_99"],
                               mode="lines+markers", name="steps to 99% validation"))
    steps.update_layout(title="Steps to generalize against training fraction (median of seeds;"
                        " a missing point never got there within the budget)",
                        xaxis_title="training fraction", yaxis_title="steps", yaxis_type="log")
    return [acc, steps]


def findings(table: pd.DataFrame, budget: int) -> list[str]:
    """One sentence per run, then whether generalizing took longer at smaller fractions and
    (when every run fitted) whether fitting the training set took longer at larger ones."""
    out = []
    for row in table.itertuples():
        train = (f"not within {budget} steps" if math.isnan(row.steps_to_train_99)
                 else f"at step {row.steps_to_train_99:.0f}")
        val = (f"not within {budget} steps (best {row.best_val_acc:.3f})"
               if math.isnan(row.steps_to_val_99) else f"at step {row.steps_to_val_99:.0f}")
        at = ("" if math.isnan(row.val_acc_at_train_99)
              else f" (validation accuracy then {row.val_acc_at_train_99:.3f})")
        out.append(
            f"training fraction {row.train_fraction:.2f}, seed {row.seed}: 99% train "
            f"{train}{at}, 99% validation {val}"
            + (f", {row.delay:.1f}x later" if not math.isnan(row.delay) else "")
        )
    medians = table.groupby("train_fraction")["steps_to_val_99"].median()
    if len(medians) > 1 and medians.isna().all():
        out.append(f"no training fraction reached 99% validation accuracy within {budget} "
                   "steps")
    elif len(medians) > 1:
        # a fraction that never generalized counts as slower than any that did
        order = medians.fillna(math.inf).tolist()
        falling = all(a >= b for a, b in zip(order, order[1:], strict=False))
        out.append(
            "median steps to 99% validation "
            + ("fall" if falling else "do not fall monotonically")
            + " as the training fraction grows: "
            + ", ".join(f"{f:.2f}: {'never' if math.isnan(v) else f'{v:.0f}'}"
                        for f, v in medians.items())
        )
        fitted = table.groupby("train_fraction")["steps_to_train_99"].median()
        if fitted.notna().all():  # the paper: fitting takes longer with more data
            rising = all(a <= b for a, b in zip(fitted, fitted.iloc[1:], strict=False))
            out.append(
                "median steps to 99% training accuracy "
                + ("rise" if rising else "do not rise monotonically")
                + " as the training fraction grows: "
                + ", ".join(f"{f:.2f}: {v:.0f}" for f, v in fitted.items())
            )
    return out


@register_study("grokking", "Power et al. 2022: delayed generalization on x/y mod p (97; 23 at "
                "smoke scale)")
def run_grokking(options: StudyOptions) -> StudyResult:
    """Train the grokking zoo at ``options.scale`` and read the delay from each history."""
    clock = Clock()
    zoos = grokking_zoos(options.scale)
    stores = train_zoos(zoos, options)
    frame = finished_frame(stores)
    curves = histories(stores, frame)
    table = grokking_table(frame, curves)
    fraction = frame["data.options.train_split"]
    labels = {
        run_id: f"fraction {f}" + (f" seed {seed}" if len(zoos[0].seeds) > 1 else "")
        for run_id, f, seed in zip(frame["run_id"], fraction, frame["seed"], strict=True)
    }
    p = zoos[0].data.options["p"]
    return StudyResult(
        name="grokking", scale=options.scale, title=f"Grokking: x/y mod {p}",
        table=table, figures=grokking_figures(table, curves, labels), published=PUBLISHED,
        found=findings(table, int(zoos[0].train.max_steps or 0)), seconds=clock.seconds,
        train_seconds=train_seconds(frame), runs=len(frame), folder=options.out,
        notes=[
            *failed_runs(frame),
            "gengap's transformer is a pre-norm encoder that pools over the four tokens "
            "(x, op, y, =), not the paper's causal decoder; warm-up is one epoch, not 10 steps."
        ],
    )
