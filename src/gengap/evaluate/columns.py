"""The one-line error for a table that lacks a column the caller named."""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from gengap.errors import GengapError


def check_columns(frame: pd.DataFrame, names: Iterable[str], kind: str) -> None:
    """Raise "no <kind> column 'name' in the table" for the first of ``names`` that
    ``frame`` lacks (a bare ``KeyError`` would not say which kind of column was wanted)."""
    for name in names:
        if name not in frame.columns:
            raise GengapError(f"no {kind} column {name!r} in the table")
