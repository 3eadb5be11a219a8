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


def test_ranking_puts_the_best_measure_first():
    frame = pd.DataFrame({"h": [0, 1, 2, 3], "gap": [1, 2, 3, 4], "good": [1, 2, 3, 4],
                          "bad": [4, 3, 2, 1]})
    table = ranking_table(frame, ["bad", "good"], ["h"])
    assert list(table["measure"]) == ["good", "bad"]
    assert list(table["tau"]) == [1.0, -1.0]
