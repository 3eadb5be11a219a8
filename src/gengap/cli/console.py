"""The terminal: one rich console, progress bars, and tables."""

from __future__ import annotations

import io
import math
import os
import sys

import numpy as np
import pandas as pd
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table


class ReaderSafeStdout(io.TextIOBase):
    """``sys.stdout`` as it is at each write (tests swap it), where a reader that went away
    (``gengap evaluate ... --out t.csv | head``) ends the printing rather than the command: it
    goes on and writes its output files."""

    reader_gone = False

    def write(self, text: str) -> int:
        if not self.reader_gone:
            try:
                try:
                    sys.stdout.write(text)
                except UnicodeEncodeError:  # an ASCII terminal: Σ and ‖ become ?
                    sys.stdout.write(text.encode(self.encoding, "replace").decode(self.encoding))
            except BrokenPipeError:
                self._gone()
        return len(text)

    def flush(self) -> None:
        if not self.reader_gone:
            try:
                sys.stdout.flush()
            except BrokenPipeError:
                self._gone()

    def isatty(self) -> bool:
        return sys.stdout.isatty()

    @property
    def encoding(self) -> str:  # rich draws ASCII tables where stdout cannot take more
        return getattr(sys.stdout, "encoding", None) or "utf-8"

    def _gone(self) -> None:
        self.reader_gone = True
        try:  # what stdout still buffers is flushed at exit: let it go nowhere, silently
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError, io.UnsupportedOperation):
            pass


# No markup by default: zoo names, paths, failure reasons and table cells are the user's text,
# and rich would read "[/x]" in them as a closing tag (and raise). Styled messages opt in
# (markup=True) and escape what they quote.
console = Console(markup=False, file=ReaderSafeStdout())
if not console.is_terminal:  # piped or captured: don't squeeze tables into 80 columns
    console.width = 160
errors = Console(stderr=True, markup=False)


def progress() -> Progress:
    """A progress bar with count, elapsed time and ETA (transient output goes to stderr)."""
    return Progress(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=errors,
        disable=not errors.is_terminal,  # no bar frames in logs and captured output
    )


MOST_DECIMALS = 6  # a column whose smallest value needs more keeps e-notation for it


def frame_table(frame: pd.DataFrame, title: str | None = None, digits: int = 3) -> Table:
    """A rich table of a DataFrame, floats rounded, NaN shown as a dash. A float column of
    whole numbers that has a NaN or a value of 10 or more (counts that are floats because of
    a NaN somewhere, such as steps to a target that some runs never reached) is shown without
    decimals; one whose smallest value is below 10^(1 − digits) with more (:func:`_decimals`)."""
    table = Table(title=title, header_style="bold")
    decimals = []
    for column in frame.columns:
        numeric = pd.api.types.is_numeric_dtype(frame[column])
        table.add_column(str(column), justify="right" if numeric else "left")
        decimals.append(0 if _whole_numbers(frame[column]) else _decimals(frame[column], digits))
    for row in frame.itertuples(index=False):
        table.add_row(*(_cell(value, d, digits) for value, d in zip(row, decimals, strict=True)))
    return table


def _decimals(column: pd.Series, digits: int) -> int:
    """``digits`` decimals, or more for a float column of small values, so that its smallest
    one keeps ``digits`` significant digits (random designs' learning rates 0.00899 and
    0.00937 are not both 0.009); where that would take more than :data:`MOST_DECIMALS`,
    ``digits``, the smallest values then written in e-notation (see :func:`_cell`)."""
    if not pd.api.types.is_float_dtype(column):
        return digits
    values = np.abs(column.to_numpy(dtype=float))
    small = values[np.isfinite(values) & (values > 0)]
    if not len(small) or small.min() >= 10.0 ** (1 - digits):
        return digits
    needed = digits - 1 - math.floor(math.log10(small.min()))
    return needed if needed <= MOST_DECIMALS else digits


def _whole_numbers(column: pd.Series) -> bool:
    """True for a float column of whole numbers below 2⁵² (from there on every float is whole:
    large products stay in the e-notation) with a NaN or a value of 10 or more. Small whole
    values alone are more likely measurements (accuracies of 1.0) and keep their digits."""
    if not pd.api.types.is_float_dtype(column):
        return False
    values = np.abs(column.dropna().to_numpy())
    return (len(values) > 0 and bool((values < 2.0**52).all())
            and bool((np.round(values) == values).all())
            and (bool(column.isna().any()) or float(values.max()) >= 10))


def _cell(value: object, decimals: int, digits: int) -> str:
    """A value with ``decimals`` decimals; very large or small ones (below 10^-decimals) with
    ``digits`` significant digits in e-notation."""
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
