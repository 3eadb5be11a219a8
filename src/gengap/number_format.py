"""How a table column of numbers is written, alike in the terminal and in the report: its
decimals, chosen from the whole column, and each cell."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

MOST_DECIMALS = 6  # a column whose smallest value needs more keeps e-notation for it


def column_decimals(column: pd.Series, digits: int) -> int:
    """The decimals of ``column``'s cells: none for a float column of whole numbers that has a
    NaN or a value of 10 or more (counts that are floats because of a NaN somewhere, such as
    steps to a target that some runs never reached); else ``digits``, or more for a float
    column of small values, so that its smallest one keeps ``digits`` significant digits
    (random designs' learning rates 0.00899 and 0.00937 are not both 0.009), up to
    :data:`MOST_DECIMALS` (beyond, ``digits``, and the smallest values in e-notation)."""
    if not pd.api.types.is_float_dtype(column):
        return digits
    if _whole_numbers(column):
        return 0
    values = np.abs(column.to_numpy(dtype=float))
    small = values[np.isfinite(values) & (values > 0)]
    if not len(small) or small.min() >= 10.0 ** (1 - digits):
        return digits
    needed = digits - 1 - math.floor(math.log10(small.min()))
    return needed if needed <= MOST_DECIMALS else digits


def _whole_numbers(column: pd.Series) -> bool:
    """True for a float column of whole numbers below 2⁵² (from there on every float is whole:
    large products stay in the e-notation) with a value of 10 or more, or with a NaN and a
    value of 2 or more. Whole values of 0 and 1 alone are more likely measurements (accuracies
    of 1.0, a tau of 0 or 1) and keep their digits."""
    values = np.abs(column.dropna().to_numpy())
    return (len(values) > 0 and bool((values < 2.0**52).all())
            and bool((np.round(values) == values).all())
            and (float(values.max()) >= 10
                 or (bool(column.isna().any()) and float(values.max()) >= 2)))


def cell(value: object, decimals: int, digits: int) -> str:
    """A value with ``decimals`` decimals; very large or small ones (below 10^-decimals) with
    ``digits`` significant digits in e-notation; a missing one (NaN, None, pd.NA) a dash."""
    if value is pd.NA or value is None:  # missing in an Int64 or object column
        return "–"
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        if decimals == 0:
            return f"{value + 0.0:.0f}"  # + 0.0: no "-0"
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 10**-decimals):
            return f"{value:.{digits}g}"
        return f"{value:.{decimals}f}"
    return str(value)


def counted(number: int, noun: str) -> str:
    """``1 run``, ``2 runs``: a count with its noun, plural (an added s) unless one."""
    return f"{number} {noun}" + ("" if number == 1 else "s")
