"""The terminal: one rich console, progress bars, and tables."""

from __future__ import annotations

import io
import os
import sys

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

from gengap.number_format import cell, column_decimals


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


def frame_table(frame: pd.DataFrame, title: str | None = None, digits: int = 3) -> Table:
    """A rich table of a DataFrame, floats rounded, NaN shown as a dash; each column's
    decimals as :func:`gengap.number_format.column_decimals` chooses them."""
    table = Table(title=title, header_style="bold")
    decimals = []
    for column in frame.columns:
        numeric = pd.api.types.is_numeric_dtype(frame[column])
        table.add_column(str(column), justify="right" if numeric else "left")
        decimals.append(column_decimals(frame[column], digits))
    for row in frame.itertuples(index=False):
        table.add_row(*(cell(value, d, digits) for value, d in zip(row, decimals, strict=True)))
    return table
