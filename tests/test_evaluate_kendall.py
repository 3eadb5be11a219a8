"""Kendall's tau against scipy, Psi, their bootstrap intervals, and the targets."""

import numpy as np
import pandas as pd
import pytest
from scipy.stats import kendalltau

from gengap.errors import GengapError
from gengap.evaluate import (
    granulated_kendall,
    granulated_kendall_interval,
    kendall,
    kendall_interval,
    ranking_table,
    with_target,
)
from gengap.evaluate.bootstrap import _ratio, _signs


def test_tau_is_scipys_tau_b_with_ties_and_missing_values():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 4, 60).astype(float)
    y = x + rng.integers(0, 3, 60)
    x[3] = np.nan
    keep = np.isfinite(x)
    expected = kendalltau(x[keep], y[keep], variant="b").statistic
    assert kendall(x, y) == pytest.approx(expected, abs=1e-12)
    assert kendall_interval(x, y, n_boot=50).value == pytest.approx(expected, abs=1e-12)


def test_weighted_tau_equals_scipy_on_the_repeated_sample():
    # A bootstrap resample is a weight vector; its tau must be scipy's tau-b on the sample
    # with each run repeated that many times (copies tie on both sides).
    rng = np.random.default_rng(1)
    x, y = rng.integers(0, 5, 25).astype(float), rng.normal(size=25)
    weights = rng.multinomial(25, np.full(25, 1 / 25), size=6).astype(float)
    sx, sy = _signs(x), _signs(y)
    ours = _ratio(weights, sx * sy, np.abs(sx), np.abs(sy))
    for w, value in zip(weights, ours, strict=True):
        idx = np.repeat(np.arange(25), w.astype(int))
        assert value == pytest.approx(kendalltau(x[idx], y[idx], variant="b").statistic,
                                      abs=1e-12)


def test_intervals_cover_the_estimate_and_shrink_with_more_runs():
    rng = np.random.default_rng(2)
    small, large = rng.normal(size=20), rng.normal(size=400)
    a = kendall_interval(small, small + rng.normal(size=20), n_boot=300)
    b = kendall_interval(large, large + rng.normal(size=400), n_boot=300)
    assert a.low <= a.value <= a.high and b.low <= b.value <= b.high
    assert (b.high - b.low) < (a.high - a.low)


def test_psi_interval_point_is_psi():
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"a": rng.integers(0, 2, 80), "b": rng.integers(0, 3, 80),
                          "gap": rng.normal(size=80)})
    frame["m"] = frame["gap"] + rng.normal(size=80)
    psi, axes = granulated_kendall_interval(frame, "m", "gap", ["a", "b"], n_boot=200)
    expected, per_axis = granulated_kendall(frame, "m", "gap", ["a", "b"])
    assert psi.value == pytest.approx(expected, abs=1e-12)
    assert {k: v.value for k, v in axes.items()} == pytest.approx(per_axis, abs=1e-12)
    assert psi.low <= psi.value <= psi.high


def test_a_weighted_psi_is_psi_of_the_repeated_sample():
    from gengap.evaluate.kendall import axis_tau

    rng = np.random.default_rng(5)
    frame = pd.DataFrame({"a": rng.integers(0, 3, 30), "b": rng.integers(0, 2, 30),
                          "gap": rng.normal(size=30)})
    frame["m"] = frame["gap"] + rng.normal(size=30)
    counts = rng.multinomial(30, np.full(30, 1 / 30))
    repeated = frame.loc[np.repeat(frame.index, counts)]
    x, y = frame["m"].to_numpy(), frame["gap"].to_numpy()
    for axis in ("a", "b"):
        weighted = axis_tau(frame, x, y, axis, ["a", "b"], counts[None].astype(float))[0]
        assert weighted == pytest.approx(
            granulated_kendall(repeated, "m", "gap", ["a", "b"])[1][axis], abs=1e-12)


def test_targets_and_the_orientation_of_test_accuracy():
    frame = pd.DataFrame({"h": [0, 1, 2, 3], "train_acc": [1.0] * 4,
                          "test_acc": [0.9, 0.8, 0.7, 0.6], "m": [1.0, 2.0, 3.0, 4.0],
                          "anti": [4.0, 3.0, 2.0, 1.0]})
    assert list(with_target(frame, "test_error")["test_error"]) == pytest.approx(
        [0.1, 0.2, 0.3, 0.4])
    assert list(with_target(frame, "gap")["gap"]) == pytest.approx([0.1, 0.2, 0.3, 0.4])
    table = ranking_table(frame, ["anti", "m"], ["h"], target="test_acc")
    assert list(table["measure"]) == ["m", "anti"]  # the most negative tau ranks first
    assert table.loc[0, "tau"] == -1.0
    table = ranking_table(frame, ["anti", "m"], ["h"], target="test_error", bootstrap=50)
    assert table.loc[0, "measure"] == "m" and table.loc[0, "tau_high"] == pytest.approx(1.0)
    with pytest.raises(GengapError, match="unknown target"):
        with_target(frame, "accuracy")
    with pytest.raises(GengapError, match="unknown metric"):
        ranking_table(frame, ["m"], ["h"], metrics=("taus",))


def test_infinite_measure_values_are_ranked_at_their_end_not_dropped():
    """An evaluation dropped runs whose measure was ±inf (path_norm overflowing, 1/γ² at γ = 0)
    as if they were missing; scipy's tau keeps them, as does every metric now."""
    rng = np.random.default_rng(3)
    grid = pd.DataFrame([(w, lr, s) for w in (1, 2, 3) for lr in (1, 2) for s in (0, 1)],
                        columns=["width", "lr", "seed"])
    grid["gap"] = rng.normal(size=len(grid))
    grid["m"] = grid["gap"] + rng.normal(scale=0.5, size=len(grid))
    grid.loc[[2, 7], "m"] = [np.inf, -np.inf]
    grid.loc[4, "m"] = np.nan  # still missing
    table = ranking_table(grid, ["m"], ["width", "lr"], metrics=("tau", "psi", "cmi", "robust"),
                          grid="largest", replicates="seed", min_ess=1, test_size=10**6)
    row = table.set_index("measure").loc["m"]
    assert row["n"] == 11
    keep = grid["m"].notna()
    assert row["tau"] == pytest.approx(kendalltau(grid["m"][keep], grid["gap"][keep]).statistic)
    # the same as with the infinities replaced by finite values at the same ends
    finite = grid.assign(m=grid["m"].replace({np.inf: 1e6, -np.inf: -1e6}))
    expected = ranking_table(finite, ["m"], ["width", "lr"],
                             metrics=("tau", "psi", "cmi", "robust"), grid="largest",
                             replicates="seed", min_ess=1, test_size=10**6)
    pd.testing.assert_series_equal(row, expected.set_index("measure").loc["m"])
    assert table.attrs["notes"][0] == ("m: 2 runs with an infinite value, ranked at the end "
                                       "it points to rather than dropped")


def test_cmi_and_the_sign_error_read_test_accuracy_as_test_error():
    """Against test_acc the CMI put its ties and self-pairs in the wrong cell (42.4 against
    14.1 on the QA zoo) and the sign error counted a perfect measure as always wrong."""
    rng = np.random.default_rng(5)
    grid = pd.DataFrame([(w, lr, s) for w in (1, 2, 3) for lr in (1, 2) for s in (0, 1, 2)],
                        columns=["width", "lr", "seed"])
    grid["train_acc"] = 1.0
    grid["test_acc"] = np.round(0.8 + 0.05 * rng.normal(size=len(grid)), 2)  # with ties
    grid["good"] = 1 - grid["test_acc"] + 0.01 * rng.normal(size=len(grid))
    grid["noise"] = rng.normal(size=len(grid))
    metrics = ("tau", "cmi", "robust")
    kwargs = dict(metrics=metrics, replicates="seed", min_ess=1, filter_noise=False)
    error = ranking_table(grid, ["good", "noise"], ["width", "lr"], "test_error", **kwargs)
    acc = ranking_table(grid, ["good", "noise"], ["width", "lr"], "test_acc", **kwargs)
    error, acc = error.set_index("measure"), acc.set_index("measure")
    same = [c for c in error.columns if c.startswith(("cmi", "robust"))]
    pd.testing.assert_frame_equal(acc[same], error.loc[acc.index, same])
    assert acc.loc["good", "tau"] == pytest.approx(-error.loc["good", "tau"])
    assert acc.loc["good", "robust_mean"] < 0.5 and acc.index[0] == "good"


def test_a_missing_hyperparameter_value_is_one_value_of_its_axis():
    """Two seeds of an unrecorded (NaN) learning rate counted as a pair along lr, and the CMI
    refused 'value nan ... is not among its possible values [0.1, nan]'."""
    rng = np.random.default_rng(8)
    grid = pd.DataFrame([(w, lr, s) for w in (8, 16) for lr in (0.1, np.nan) for s in (0, 1)],
                        columns=["width", "lr", "seed"])
    grid["gap"] = rng.normal(size=len(grid))
    grid["m"] = grid["gap"] + rng.normal(scale=0.3, size=len(grid))
    filled = grid.assign(lr=grid["lr"].fillna(-1.0))
    kwargs = dict(metrics=("tau", "psi", "cmi"), replicates="seed")
    with_nan = ranking_table(grid, ["m"], ["width", "lr"], **kwargs).set_index("measure")
    expected = ranking_table(filled, ["m"], ["width", "lr"], **kwargs).set_index("measure")
    pd.testing.assert_frame_equal(with_nan, expected)
    assert with_nan.loc["m", "psi[lr]"] == granulated_kendall(filled, "m", "gap",
                                                              ["width", "lr"])[1]["lr"]


def test_a_ranking_of_a_few_networks_says_it_is_no_finding():
    """Two networks gave every measure tau 1.000 [1.00, 1.00] without a word."""
    from gengap.evaluate import ranking_table

    two = pd.DataFrame({"lr": [0.1, 0.2], "test_acc": [0.9, 0.8], "train_acc": [1.0, 1.0],
                        "m": [1.0, 2.0]})
    table = ranking_table(two, "m", "lr", metrics="tau", bootstrap=50)
    assert (table.loc[0, "tau_low"], table.loc[0, "tau_high"]) == (1.0, 1.0)
    assert table.attrs["notes"] == ["only 2 networks with a gap: tau takes few values there (±1 "
                                    "or 0 with two) and a bootstrap interval little room, so no "
                                    "ranking of them is a finding"]
    five = pd.concat([two] * 3, ignore_index=True).iloc[:5].assign(m=range(5))
    assert ranking_table(five, "m", "lr", metrics="tau", bootstrap=50).attrs["notes"] == []
