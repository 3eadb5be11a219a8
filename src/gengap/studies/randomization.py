"""The randomization tests of Zhang et al. 2017 ("Understanding deep learning requires
rethinking generalization") on embedded data: the same network and training recipe on true
labels, labels corrupted with probability p (0 to 100%), random labels, shuffled pixels,
random pixels and Gaussian inputs."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from gengap.specs import ArchSpec, DataSpec, TrainSpec, ZooSpec
from gengap.studies.common import chance, seed_mean
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
    "Zhang et al. 2017 (CIFAR-10, Inception, AlexNet and MLPs, §2 and Table 1): every network "
    "fits every condition to 100% training accuracy (MLP 3x512 on random labels: 100% train, "
    "10.48% test), with the same hyperparameters as for true labels. As the label corruption p "
    "grows to 1 the test error rises to 90% (chance). Fitting slows as label noise grows "
    "(roughly 1x to 4x the time of true labels), while random pixels and Gaussian inputs start "
    "converging faster than random labels."
)

# Input corruptions: condition name -> DataSpec field switched on.
INPUT_CONDITIONS = {
    "shuffled pixels": "shuffled_pixels",
    "random pixels": "random_pixels",
    "gaussian inputs": "gaussian_inputs",
}


def randomization_zoos(scale: str) -> list[ZooSpec]:
    """The study's zoos at ``scale``: ``labels`` (an axis over the corruption probability p,
    0 = true labels, 1 = every label redrawn), ``random_labels``, and one zoo per input
    corruption."""
    data = DataSpec(
        name=str(pick(scale, "digits", "digits", "mnist1d")),
        train_size=pick(scale, 128, None, None),  # type: ignore[arg-type]
    )
    arch = ArchSpec(family="mlp", width=int(pick(scale, 256, 512, 512)),  # type: ignore[arg-type]
                    depth=int(pick(scale, 1, 1, 2)))  # type: ignore[arg-type]
    # One recipe for every condition, as in the paper: no explicit regularization.
    train = TrainSpec(
        optimizer="adam", lr=float(pick(scale, 0.01, 0.001, 0.001)),  # type: ignore[arg-type]
        batch_size=int(pick(scale, 128, 128, 128)),  # type: ignore[arg-type]
        max_epochs=int(pick(scale, 300, 1000, 2000)),  # type: ignore[arg-type]
        target_ce=0.01,
    )
    seeds = tuple(pick(scale, (0,), (0, 1), (0, 1, 2)))  # type: ignore[arg-type]
    levels = tuple(pick(scale, (0.0, 0.5, 1.0), (0.0, 0.2, 0.4, 0.6, 0.8, 1.0),  # type: ignore[arg-type]
                        tuple(round(0.1 * i, 1) for i in range(11))))
    common = {"arch": arch, "train": train, "seeds": seeds}
    zoos = [
        ZooSpec(name="labels", data=data, axes={"data.label_noise": levels}, **common),
        ZooSpec(name="random_labels", data=data.model_copy(update={"random_labels": True}),
                **common),
    ]
    for knob in INPUT_CONDITIONS.values():
        zoos.append(ZooSpec(name=knob, data=data.model_copy(update={knob: True}), **common))
    return zoos


def condition_of(row: pd.Series) -> str:
    """A run's condition name from its zoo and knobs."""
    if row["zoo"] == "labels":
        p = float(row["data.label_noise"])
        return "true labels" if p == 0 else f"label noise {p:.0%}"
    if row["zoo"] == "random_labels":
        return "random labels"
    return {v: k for k, v in INPUT_CONDITIONS.items()}[row["zoo"]]


def randomization_table(frame: pd.DataFrame, chance_acc: float) -> pd.DataFrame:
    """One row per condition: the corruption p (labels), train and test accuracy, epochs and
    steps to fit (means over seeds), the chance baseline, and whether every seed fitted."""
    frame = frame.copy()
    frame["condition"] = frame.apply(condition_of, axis=1)
    frame["label_noise"] = frame.get("data.label_noise")
    frame["fitted"] = frame["train_acc"] >= 0.99
    table = seed_mean(
        frame, ["condition"], ["label_noise", "train_acc", "test_acc", "epochs", "steps", "fitted"]
    )
    # a condition whose every run failed keeps its row (no values, not fitted)
    order = list(dict.fromkeys(frame["condition"]))
    table = table.set_index("condition").reindex(order).reset_index()
    table["label_noise"] = table["condition"].map(
        frame.groupby("condition", sort=False)["label_noise"].first())
    table["runs"] = table["runs"].fillna(0).astype(int)
    # fitted on every seed: a failed seed (NaN accuracy) is one that did not fit
    table["fitted"] = table["condition"].map(frame.groupby("condition", sort=False)["fitted"]
                                             .all()).astype(bool)
    table["chance"] = chance_acc
    return table


def randomization_figures(
    table: pd.DataFrame, curves: dict[str, pd.DataFrame]
) -> list[go.Figure]:
    """Training accuracy against epochs for each condition (one seed each), and test accuracy
    against the label corruption p with the input corruptions and chance beside it."""
    fit = go.Figure()
    for condition, history in curves.items():
        fit.add_trace(go.Scatter(x=history["epoch"], y=history["train_acc"], mode="lines",
                                 name=condition))
    fit.update_layout(title="The network fits every condition: training accuracy",
                      xaxis_title="epoch", yaxis_title="training accuracy", yaxis_range=[0, 1.02])
    test = go.Figure()
    labels = table.dropna(subset=["label_noise"]).sort_values("label_noise")
    test.add_trace(go.Scatter(x=labels["label_noise"], y=labels["test_acc"], mode="lines+markers",
                              name="test accuracy"))
    test.add_trace(go.Scatter(x=labels["label_noise"], y=labels["train_acc"],
                              mode="lines+markers", name="training accuracy"))
    for row in table[table["label_noise"].isna()].itertuples():
        test.add_trace(go.Scatter(x=[1.0], y=[row.test_acc], mode="markers", name=row.condition,
                                  marker={"symbol": "diamond", "size": 10}))
    test.add_hline(y=float(table["chance"].iloc[0]), line_dash="dot",
                   annotation_text="chance (majority class)")
    test.update_layout(title="Test accuracy falls to chance as label corruption grows",
                       xaxis_title="label corruption p", yaxis_title="accuracy",
                       yaxis_range=[0, 1.02])
    return [fit, test]


def findings(table: pd.DataFrame) -> list[str]:
    """What this run shows, in sentences computed from the table."""
    by = table.set_index("condition")
    lowest = table["train_acc"].min()
    where = "" if lowest == 1.0 else f" ({by['train_acc'].idxmin()})"
    out = [
        f"lowest training accuracy over all {len(table)} conditions: {lowest:.3f}{where}; "
        f"{int(table['fitted'].sum())} of {len(table)} conditions fitted (≥ 0.99) on every seed",
    ]
    if {"true labels", "random labels"} <= set(by.index):
        true, rand = by.loc["true labels"], by.loc["random labels"]
        out.append(
            f"test accuracy: true labels {true.test_acc:.3f}, random labels {rand.test_acc:.3f}, "
            f"chance {true.chance:.3f}"
        )
        out.append(
            f"steps to fit: true labels {true.steps:.0f}, random labels {rand.steps:.0f} "
            f"({rand.steps / max(true.steps, 1):.1f}x)"
        )
    labels = table.dropna(subset=["label_noise"]).sort_values("label_noise")
    if len(labels) > 1:
        falls = bool((labels["test_acc"].diff().dropna() <= 0.02).all())
        out.append(
            "test accuracy " + ("falls" if falls else "does not fall monotonically")
            + " as the corruption p grows: "
            + ", ".join(f"p={p:.1f}: {a:.3f}" for p, a in zip(labels.label_noise,
                                                               labels.test_acc, strict=True))
        )
    return out


@register_study("randomization", "Zhang et al. 2017: networks fit random labels and noise")
def run_randomization(options: StudyOptions) -> StudyResult:
    """Train the randomization zoos at ``options.scale`` and tabulate each condition."""
    clock = Clock()
    zoos = randomization_zoos(options.scale)
    stores = train_zoos(zoos, options)
    frame = finished_frame(stores)
    table = randomization_table(frame, chance(zoos[0].data))
    all_curves = histories(stores, frame)
    curves: dict[str, pd.DataFrame] = {}
    for row in frame[frame["seed"] == 0].itertuples():
        if row.run_id in all_curves:
            curves.setdefault(condition_of(frame.loc[row.Index]), all_curves[row.run_id])
    return StudyResult(
        name="randomization", scale=options.scale,
        title=f"Randomization tests on {zoos[0].data.name} (Zhang et al. 2017)",
        table=table, figures=randomization_figures(table, curves), published=PUBLISHED,
        found=findings(table), seconds=clock.seconds, train_seconds=train_seconds(frame),
        runs=len(frame), folder=options.out, notes=failed_runs(frame),
    )
