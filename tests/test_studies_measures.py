"""The measures study at smoke scale: the catalogue ranked on a CNN grid, beside the published
directions, by measure and by group."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from gengap.evaluate import ranking_table
from gengap.studies import run_study
from gengap.studies.measures_study import (
    PUBLISHED_SIGN,
    best_by_metric,
    comparison_table,
    group_table,
    measures_zoos,
    unfiltered_robust,
)

pytestmark = pytest.mark.slow  # ~13 s: 8 CNNs and the cheap groups of the catalogue


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("study") / "fantastic"
    return run_study("measures", out, scale="smoke", device="cpu", population="off")


def test_default_grid_has_five_hyperparameters() -> None:
    (zoo,) = measures_zoos("default")
    assert len(zoo.hyperparameters) >= 5 and zoo.data.name == "digits"
    assert zoo.arch.family in ("cnn", "nin")


def test_ranking_beside_published_directions(result) -> None:
    table = result.table
    assert {"params", "vc_dim", "path_norm", "frobenius_distance", "margin",
            "optim_steps_to_0.1"} <= set(
        table["measure"])
    by = table.set_index("measure")
    # #params and the VC bound order the grid's networks alike (both grow with width).
    assert by.loc["params", "tau"] == pytest.approx(by.loc["vc_dim", "tau"])
    assert by.loc["params", "published"] == "−"
    for row in table.itertuples():
        if row.published == "not stated":
            assert row.agrees is None
        elif row.published != "weak / flips":
            assert row.agrees == (np.sign(row.tau) == (1 if row.published == "+" else -1))
    ranking = result.extra_tables["ranking"]
    assert {"tau", "psi", "cmi", "robust_mean"} <= set(ranking.columns)


def test_group_table_counts(result) -> None:
    groups = result.extra_tables["groups"].set_index("group")
    comparison = result.table
    for group, part in comparison.groupby("group"):
        # the mean leaves out a tau over fewer than half the networks (it led the table and
        # made the group's mean with n = 2 of 8), and so do the agree/flip counts
        counted = part[part["n"] >= max(3, math.ceil(result.runs / 2))]
        placed = counted["agrees"].notna().sum()
        assert groups.loc[group, "agree"] + groups.loc[group, "flip"] == placed
        assert groups.loc[group, "measures_in_mean"] == len(counted)
        assert groups.loc[group, "mean_tau"] == pytest.approx(counted["tau"].mean(),
                                                              nan_ok=True)
    for line in result.found:  # a group without such a measure: no "mean tau +nan"
        assert "nan" not in line, line
    # the table lists them first, the short ones after
    enough = comparison["enough"].tolist()
    assert enough == sorted(enough, reverse=True) and not all(enough)
    assert enough == (comparison["n"] >= max(3, math.ceil(result.runs / 2))).tolist()


def test_comparison_by_hand() -> None:
    ranking = pd.DataFrame({"measure": ["params", "path_norm", "margin", "param_norm",
                                        "frobenius_distance"],
                            "tau": [0.5, 0.4, -0.05, 0.2, 0.0], "psi": [0.1, 0.2, 0.0, 0.3, 0.0]})
    table = comparison_table(ranking).set_index("measure")
    assert PUBLISHED_SIGN["params"] == -1 and table.loc["params", "agrees"] is False
    assert table.loc["path_norm", "agrees"] is True
    assert table.loc["margin", "agrees"] is True  # weak published, |tau| < 0.1 here
    assert table.loc["param_norm", "agrees"] is None
    # tau exactly 0 against a published sign: neither agrees nor flips (it counted as a flip)
    assert PUBLISHED_SIGN["frobenius_distance"] == 1
    assert table.loc["frobenius_distance", "agrees"] is None
    groups = group_table(table.reset_index()).set_index("group")
    assert groups.loc["size", "flip"] == 1 and groups.loc["norm", "agree"] == 1
    assert groups.loc["norm", "flip"] == 0


def robust_frame() -> pd.DataFrame:
    """Two settings of one hyperparameter, two seeds each; gaps closer than 450 test images
    can resolve."""
    return pd.DataFrame({"h": ["a", "a", "b", "b"], "seed": [0, 1, 0, 1],
                         "gap": [0.02, 0.03, 0.05, 0.04], "m": [1.0, 2.0, 3.0, 0.0]})


def test_robust_without_the_noise_filter_by_hand() -> None:
    frame = robust_frame()
    filtered = ranking_table(frame, ["m"], ["h"], metrics=("robust",), test_size=450,
                             min_ess=2)
    assert filtered.loc[0, "robust_envs"] == 0  # no pair differs by more than 0.092
    ranking, note = unfiltered_robust(filtered, frame, ["m"], ["h"], 450, 2)
    # pairs (a, b): (1, 3) agree, (1, 0) flip, (2, 3) agree, (2, 0) flip, in both directions
    row = ranking.set_index("measure").loc["m"]
    assert row["robust_envs"] == 2
    assert row["robust_mean"] == pytest.approx(0.5) and row["robust_max"] == pytest.approx(0.5)
    assert "more than 0.092" in note and "at most 0.030" in note


def test_best_by_metric_orders_each_metric() -> None:
    ranking = pd.DataFrame({"measure": ["x", "y", "z"], "robust_mean": [0.4, 0.1, np.nan],
                            "robust_max": [0.5, 0.9, np.nan], "cmi": [1.0, 3.0, 2.0]})
    robust, cmi = best_by_metric(ranking)
    assert robust == "lowest mean robust sign error: y (0.10, worst 0.90), x (0.40, worst 0.50)"
    assert cmi == "highest CMI (×100): y (3.00), z (2.00), x (1.00)"
