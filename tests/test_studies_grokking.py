"""The grokking study at smoke scale: one row per training fraction, the training set fitted
long before validation accuracy moves, and curves on a log step axis."""

from __future__ import annotations

import math

import pytest

from gengap.studies import run_study
from gengap.studies.grokking import first_step, grokking_zoos

pytestmark = pytest.mark.slow  # ~10 s: two small transformers for 300 steps each


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("study") / "grok"
    return run_study("grokking", out, scale="smoke", device="cpu", population="off")


def test_paper_setting_beyond_smoke() -> None:
    (zoo,) = grokking_zoos("default")
    assert zoo.data.options == {"p": 97, "op": "div"}
    assert (zoo.train.optimizer, zoo.train.weight_decay, zoo.train.lr) == ("adamw", 1.0, 1e-3)
    assert (zoo.arch.family, zoo.arch.width, zoo.arch.depth, zoo.arch.heads) == (
        "transformer", 128, 2, 4)
    assert zoo.train.target_ce == 0.0  # the whole step budget is spent


def test_train_fitted_before_validation(result) -> None:
    table = result.table
    assert list(table["train_fraction"]) == [0.5, 0.8]
    assert (table["steps"] == 300).all()
    half = table.iloc[0]
    assert half.final_train_acc >= 0.99 and not math.isnan(half.steps_to_train_99)
    # Memorized, not generalized: validation stays near chance (1/23) within the budget.
    assert math.isnan(half.steps_to_val_99) and half.best_val_acc < 0.3


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
