"""Kendall's tau against scipy, and Psi against a hand-computed grid."""

import numpy as np
import pandas as pd
import pytest
from scipy.stats import kendalltau

from gengap.evaluate import granulated_kendall, kendall, ranking_table


def test_kendall_is_scipys_tau_b_with_ties():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 5, 40).astype(float)  # many ties
    y = x + rng.integers(0, 3, 40)
    assert kendall(x, y) == pytest.approx(kendalltau(x, y, variant="b").statistic)
    assert np.isnan(kendall([1, 1, 1], [1, 2, 3]))


def test_psi_on_a_2x2_grid_by_hand():
    # Axes a, b in {0, 1}. Along a (b fixed): at b=0 the measure agrees with the gap (tau +1),
    # at b=1 it disagrees (tau -1): psi_a = 0. Along b (a fixed): agrees at a=0 and a=1: psi_b=1.
    frame = pd.DataFrame(
        {
            "a": [0, 1, 0, 1],
            "b": [0, 0, 1, 1],
            "gap": [0.1, 0.2, 0.3, 0.25],
            "m": [1.0, 2.0, 5.0, 6.0],
        }
    )
    psi, per_axis = granulated_kendall(frame, "m", "gap", ["a", "b"])
    assert per_axis == {"a": 0.0, "b": 1.0}
    assert psi == 0.5
    table = ranking_table(frame, ["m"], ["a", "b"])
    assert table.loc[0, "psi"] == 0.5 and table.loc[0, "psi[b]"] == 1.0
    assert table.loc[0, "tau"] == pytest.approx(kendalltau(frame.m, frame.gap).statistic)


def test_psi_counts_ties_as_zero_as_the_papers_tau():
    # a 3 x 2 grid; the measure depends on `a` only, so it is constant along `b`: the paper's
    # tau (ties count 0) gives psi_b = 0, which Psi averages in
    frame = pd.DataFrame({"a": [0, 1, 2, 0, 1, 2], "b": [0, 0, 0, 1, 1, 1],
                          "gap": [0.1, 0.3, 0.2, 0.15, 0.35, 0.4],
                          "m": [1.0, 2.0, 3.0, 1.0, 2.0, 3.0]})
    psi, per_axis = granulated_kendall(frame, "m", "gap", ["a", "b"])
    # along a at b=0: pairs (0,1) +, (0,2) +, (1,2) -: 1/3; at b=1: all three +: 1
    assert per_axis["a"] == pytest.approx((1 / 3 + 1) / 2)
    assert per_axis["b"] == 0.0
    assert psi == pytest.approx((2 / 3 + 0) / 2)


def test_psi_leaves_out_pairs_that_differ_only_in_seed():
    # two seeds per cell of a 2-value axis `a`; `w` never varies
    frame = pd.DataFrame({"a": [0, 0, 1, 1], "w": [8, 8, 8, 8], "seed": [0, 1, 0, 1],
                          "gap": [0.1, 0.4, 0.2, 0.3], "m": [1.0, 4.0, 2.0, 3.0]})
    psi, per_axis = granulated_kendall(frame, "m", "gap", ["a", "w"])
    # the four pairs across a all agree; a `w` made only of seed pairs has no pair: NaN
    assert per_axis["a"] == 1.0
    assert np.isnan(per_axis["w"]) and psi == 1.0
    frame.loc[3, "m"] = 1.8  # the seed pair (rows 2, 3) now disagrees, the pairs across a
    assert granulated_kendall(frame, "m", "gap", ["a", "w"])[1]["a"] == 1.0  # still agree


def test_ranking_puts_the_best_measure_first():
    frame = pd.DataFrame({"h": [0, 1, 2, 3], "gap": [1, 2, 3, 4], "good": [1, 2, 3, 4],
                          "bad": [4, 3, 2, 1]})
    table = ranking_table(frame, ["bad", "good"], ["h"])
    assert list(table["measure"]) == ["good", "bad"]
    assert list(table["tau"]) == [1.0, -1.0]
