"""The evaluation functions read values by their order: ±inf is a value at the end it points
to (as ranking_table read it; the functions alone dropped those runs, which changed tau and Ψ
and made a complete grid look incomplete to the CMI), and the CMI and the sign error read
test accuracy turned round (as ranking_table did; the functions alone read it as it is)."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy.stats import kendalltau

from gengap.evaluate import (
    cmi_by_set,
    conditional_mi,
    granulated_kendall,
    kendall,
    ranking_table,
    robust_sign_error,
)


def grid_frame(seed: int) -> pd.DataFrame:
    """A 3 x 2 grid, two seeds per cell, a tied measure with infinities and a NaN."""
    rng = np.random.default_rng(seed)
    rows = [{"a": a, "b": b, "seed": s} for a, b, s in itertools.product(range(3), range(2),
                                                                        range(2))]
    frame = pd.DataFrame(rows)
    frame["m"] = rng.integers(0, 4, len(frame)).astype(float)
    frame.loc[[1, 6], "m"] = np.inf
    frame.loc[3, "m"] = -np.inf
    frame.loc[8, "m"] = np.nan
    frame["test_acc"] = np.round(rng.uniform(0.5, 0.9, len(frame)), 2)
    frame["test_error"] = 1.0 - frame["test_acc"]
    frame["train_acc"] = 1.0
    return frame


def with_stand_ins(frame: pd.DataFrame) -> pd.DataFrame:
    """The same order with finite stand-ins for the infinities."""
    return frame.assign(m=frame["m"].replace({np.inf: 1e300, -np.inf: -1e300}))


def test_kendall_keeps_infinities_at_their_ends():
    m = [1.0, 2.0, np.inf, np.inf, 3.0, np.nan]
    gap = [0.1, 0.2, 0.3, 0.4, 0.05, 0.2]
    expected = kendalltau([1, 2, np.inf, np.inf, 3], [0.1, 0.2, 0.3, 0.4, 0.05]).statistic
    assert kendall(m, gap) == pytest.approx(expected)
    assert kendall(m, gap) == pytest.approx(0.5270462766947299)  # was -0.333, the infs dropped


@pytest.mark.parametrize("seed", range(4))
def test_every_metric_reads_infinities_as_their_stand_ins(seed: int):
    frame = grid_frame(seed)
    finite = with_stand_ins(frame)
    psi, axes = granulated_kendall(frame, "m", "gap", ["a", "b"])
    assert (psi, axes) == granulated_kendall(finite, "m", "gap", ["a", "b"])
    assert cmi_by_set(frame, "m", ["a", "b"], "test_error", replicates="seed", grid="largest"
                      ) == cmi_by_set(finite, "m", ["a", "b"], "test_error",
                                      replicates="seed", grid="largest")
    pd.testing.assert_frame_equal(
        robust_sign_error(frame, "m", ["a", "b"], "test_error", min_ess=1),
        robust_sign_error(finite, "m", ["a", "b"], "test_error", min_ess=1))


@pytest.mark.parametrize("seed", range(4))
def test_test_accuracy_is_read_turned_round_as_the_ranking_reads_it(seed: int):
    frame = with_stand_ins(grid_frame(seed))
    frame = frame[frame["seed"] == 1].drop(columns="seed")  # one network per cell, no NaN
    for target in ("test_acc", "test_error"):
        assert conditional_mi(frame, "m", ["a", "b"], target) == pytest.approx(
            conditional_mi(frame, "m", ["a", "b"], "test_error"), nan_ok=True)
        assert conditional_mi(frame, "m", ["a", "b"], target, pgdl=True) == pytest.approx(
            conditional_mi(frame, "m", ["a", "b"], "test_error", pgdl=True), nan_ok=True)
    by_acc = robust_sign_error(frame, "m", ["a", "b"], "test_acc", min_ess=1)
    pd.testing.assert_frame_equal(
        by_acc, robust_sign_error(frame, "m", ["a", "b"], "test_error", min_ess=1))
    row = ranking_table(frame, ["m"], ["a", "b"], "test_acc", metrics="cmi,robust",
                        min_ess=1).iloc[0]
    assert row["cmi"] == pytest.approx(100 * conditional_mi(frame, "m", ["a", "b"], "test_acc"))
    assert row["robust_mean"] == pytest.approx(by_acc.loc["all", "mean"], nan_ok=True)
