"""The grokking study at smoke scale: one row per training fraction, the training set fitted
long before validation accuracy moves, and curves on a log step axis."""

from __future__ import annotations

import math

import pytest

from gengap.studies import run_study
from gengap.studies.grokking import findings, first_step, grokking_zoos

pytestmark = pytest.mark.slow  # ~10 s: two small transformers for 300 steps each


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("study") / "grok"
    return run_study("grokking", out, scale="smoke", device="cpu", population="off")


def test_paper_setting_beyond_smoke() -> None:
    (default,) = grokking_zoos("default")
    (full,) = grokking_zoos("full")
    for zoo in (default, full):
        assert zoo.data.options == {"p": 97, "op": "div"}
        assert (zoo.train.optimizer, zoo.train.weight_decay, zoo.train.lr) == (
            "adamw", 1.0, 1e-3)
        assert zoo.train.target_ce == 0.0  # the whole step budget is spent
        assert zoo.train.eval_per_decade == 20  # log-spaced evaluations
    assert (full.arch.family, full.arch.width, full.arch.depth, full.arch.heads) == (
        "transformer", 128, 2, 4)
    assert full.train.max_steps == 100_000
    assert (default.arch.depth, default.train.max_steps) == (1, 8000)  # sized for a CPU


def test_train_fitted_before_validation(result) -> None:
    table = result.table
    assert list(table["train_fraction"]) == [0.5, 0.8]
    assert (table["steps"] == 300).all()
    # evaluated on the log grid, not after each of the 75 epochs (and after the last one)
    assert len(result.figures[0].data[0].x) < 75 and result.figures[0].data[0].x[-1] == 300
    half = table.iloc[0]
    assert half.final_train_acc >= 0.99 and not math.isnan(half.steps_to_train_99)
    # Memorized, not generalized: validation stays near chance (1/23) within the budget.
    assert math.isnan(half.steps_to_val_99) and half.best_val_acc < 0.3
    assert half.val_acc_at_train_99 < 0.3
    assert result.found[-1] == (
        "no training fraction reached 99% validation accuracy within 300 steps")


def test_findings_compare_the_fractions() -> None:
    import pandas as pd

    table = pd.DataFrame({
        "train_fraction": [0.3, 0.4, 0.5], "seed": [0, 0, 0], "steps": [100] * 3,
        "steps_to_train_99": [10.0, 10.0, 10.0], "steps_to_val_99": [math.nan, 80.0, 40.0],
        "delay": [math.nan, 8.0, 4.0], "val_acc_at_train_99": [0.01, 0.02, 0.03],
        "best_val_acc": [0.5, 1.0, 1.0]})
    found = findings(table, 100)
    assert found[1].endswith("99% train at step 10 (validation accuracy then 0.020), 99% "
                             "validation at step 80, 8.0x later")
    assert found[0].endswith("99% validation not within 100 steps (best 0.500)")
    assert found[-2] == ("median steps to 99% validation fall as the training fraction "
                         "grows: 0.30: never, 0.40: 80, 0.50: 40")
    assert found[-1] == ("median steps to 99% training accuracy rise as the training "
                         "fraction grows: 0.30: 10, 0.40: 10, 0.50: 10")
    table["steps_to_val_99"] = [30.0, 80.0, 40.0]
    table["steps_to_train_99"] = [10.0, 30.0, 20.0]
    found = findings(table, 100)
    assert "do not fall" in found[-2] and "do not rise" in found[-1]
    table["steps_to_train_99"] = [10.0, math.nan, 20.0]  # a run that never fitted: no sentence
    found = findings(table, 100)
    assert found[-1].startswith("median steps to 99% validation")
    assert "99% train not within 100 steps" in found[1]


def test_curves_on_a_log_step_axis(result) -> None:
    accuracy, steps = result.figures
    assert accuracy.layout.xaxis.type == "log"
    assert len(accuracy.data) == 2 * len(result.table)
    first = accuracy.data[0]
    assert list(first.x) == sorted(first.x) and first.y[-1] > first.y[0]
    assert steps.layout.yaxis.type == "log"


def test_first_step() -> None:
    import pandas as pd

    history = pd.DataFrame({"steps": [10, 20, 30], "acc": [0.5, 0.995, 1.0]})
    assert first_step(history, "acc") == 20
    assert math.isnan(first_step(history, "acc", level=1.5))
