"""Column names as the evaluation functions take them, and the one-line error for a table that
lacks a column the caller named."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pandas as pd

from gengap.errors import GengapError


def check_columns(frame: pd.DataFrame, names: Iterable[str], kind: str) -> None:
    """Raise "no <kind> column 'name' in the table" for the first of ``names`` that
    ``frame`` lacks (a bare ``KeyError`` would not say which kind of column was wanted). A
    single string for ``names`` is refused: read letter by letter it blamed a column 'g'."""
    if isinstance(names, str):
        raise GengapError(f"{kind} names as a list of column names, not the text {names!r} "
                          "(or arguments in another order than the function's)")
    for name in names:
        if name not in frame.columns:
            raise GengapError(f"no {kind} column {name!r} in the table")


def listed(names: str | Sequence[str]) -> list[str]:
    """Names given as a sequence, or as one comma-separated string (``"tau,cmi"``), each once
    in the order first given (a name twice would rank, or count, twice)."""
    if isinstance(names, str):
        names = [name.strip() for name in names.split(",") if name.strip()]
    return list(dict.fromkeys(names))
