"""The terminal tables: how cells are written."""

from __future__ import annotations

import math

import pandas as pd
from rich.console import Console

from gengap.cli.console import frame_table


def _rendered(frame: pd.DataFrame) -> str:
    out = Console(width=200, record=True)
    out.print(frame_table(frame))
    return out.export_text()


def test_whole_number_float_columns_print_without_decimals():
    # Steps to a target are floats only because NaN marks "never reached".
    text = _rendered(pd.DataFrame({"steps": [300.0, math.nan, 1200.0],
                                   "acc": [0.25, 1.0, 0.5]}))
    assert "300 " in text and "1200" in text and "300.000" not in text
    assert "–" in text  # NaN still a dash
    assert "0.250" in text and "1.000" in text  # other floats keep their digits


def test_a_column_with_any_fraction_or_only_small_whole_values_keeps_its_digits():
    text = _rendered(pd.DataFrame({"x": [2.0, 2.5, math.nan], "acc": [1.0, 1.0, 0.0],
                                   "steps": [300.0, 1200.0, 40.0]}))
    assert "2.000" in text and "2.500" in text
    assert text.count("1.000") == 2 and "0.000" in text  # accuracies, not counts
    assert "1200" in text and "300.000" not in text  # every run got there: still counts


def test_negative_zero_is_zero():
    text = _rendered(pd.DataFrame({"steps": [-0.0, math.nan, 4.0]}))
    assert "-0" not in text and " 0 " in text


def test_large_or_infinite_values_are_not_taken_for_whole_numbers():
    text = _rendered(pd.DataFrame({"prod": [3.2e17, 5.0e20, math.nan],
                                   "loss": [math.inf, 3.0, math.nan]}))
    assert "3.2e+17" in text and "5e+20" in text
    assert "inf" in text and "3.000" in text


def test_small_values_keep_three_significant_digits():
    # a random design's learning rates 0.00899538 and 0.0093725 both printed as 0.009
    text = _rendered(pd.DataFrame({"lr": [0.00899538, 0.0093725, 0.05],
                                   "acc": [0.91, 0.5, 1.0], "tiny": [1e-9, 0.5, math.nan]}))
    assert "0.00900" in text and "0.00937" in text and "0.05000" in text
    assert "0.910" in text and "0.9100" not in text  # not small: three decimals
    assert "1e-09" in text  # below a millionth, the e-notation
    # more than six decimals needed: the small values in e-notation, with every digit
    text = _rendered(pd.DataFrame({"lr": [1.234e-5, 3.9e-5, 8.7e-4]}))
    assert "1.23e-05" in text and "3.9e-05" in text and "0.00087" in text
    out = Console(width=200, record=True)
    out.print(frame_table(pd.DataFrame({"value": [3.14159e-6, 12.5]}), digits=5))
    assert "3.1416e-06" in out.export_text()


def test_none_in_an_object_column_is_a_dash():
    """The measures study's `agrees` column printed "None" where it has no answer."""
    text = _rendered(pd.DataFrame({"measure": ["a", "b", "c"], "agrees": [True, None, False]}))
    assert "None" not in text and "–" in text and "True" in text and "False" in text


def test_a_study_table_shows_answers_as_its_report_does():
    """`gengap study measures` turned the column to text first: None, True and False again."""
    from gengap.cli.study_cmds import _shown

    frame = pd.DataFrame({"measure": ["a", "b", "c"], "agrees": [True, None, False],
                          "fitted": [True, True, False]})  # a bool column too
    text = _rendered(_shown(frame))
    assert "None" not in text and "True" not in text and "False" not in text
    assert "true" in text and "false" in text and "–" in text


def test_the_report_writes_columns_as_the_terminal_does():
    """Its tables showed whole-number float columns (epochs, steps) as 14.000 and 300.000."""
    from gengap.report.tables import html_table

    frame = pd.DataFrame({"steps": [300.0, math.nan, 14.0], "lr": [0.00899, 0.00937, 0.1],
                          "acc": [0.25, 1.0, 0.5], "ok": [True, False, True]})
    html = html_table(frame)
    assert ">300<" in html and ">14<" in html and "300.000" not in html
    assert ">0.00899<" in html and ">0.250<" in html and ">true<" in html
    terminal = _rendered(frame)
    assert "0.00899" in terminal and "300 " in terminal


def test_zeros_and_ones_with_a_missing_value_keep_their_digits():
    """A learned predictor's tau column (1, 0 and a NaN) printed as counts, "1" and "0"."""
    text = _rendered(pd.DataFrame({"tau": [1.0, 0.0, math.nan], "epochs": [3.0, math.nan, 2.0]}))
    assert "1.000" in text and "0.000" in text
    assert "3 " in text and "3.000" not in text  # counts of 2 or more with a NaN: none
