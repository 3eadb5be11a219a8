"""HTML tables and numbers as the report prints them."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from html import escape

import pandas as pd

from gengap.number_format import cell, column_decimals


def number(value: object, digits: int = 3, decimals: int | None = None) -> str:
    """A cell: floats to ``decimals`` decimals (default ``digits``; significant digits when
    very large or small), NaN and None as a dash, booleans in lower case."""
    if isinstance(value, bool):
        return str(value).lower()
    return cell(value, digits if decimals is None else decimals, digits)


def html_table(
    frame: pd.DataFrame,
    digits: int = 3,
    sortable: bool = False,
    cells: dict[str, Sequence[str]] | None = None,
    css_class: str = "",
) -> str:
    """A ``<table>`` of ``frame`` with escaped text and right-aligned numbers.

    ``cells`` replaces a column's shown text (already HTML) while its numbers stay the sort key
    (``data-v``), so an interval can be shown beside a value and still sort by the value.
    """
    cells = cells or {}
    numeric = {c: pd.api.types.is_numeric_dtype(frame[c]) for c in frame.columns}
    classes = " ".join(filter(None, ["sortable" if sortable else "", css_class]))
    head = "".join(
        f'<th class="{"num" if numeric[c] else "text"}">{escape(str(c))}</th>'
        for c in frame.columns
    )
    # each column's decimals as the terminal chooses them (whole-number counts without)
    decimals = {c: column_decimals(frame[c], digits) for c in frame.columns}
    rows = []
    for i, row in enumerate(frame.itertuples(index=False)):
        tds = []
        for column, value in zip(frame.columns, row, strict=True):
            shown = cells[column][i] if column in cells else escape(
                number(value, digits, decimals[column]))
            key = _sort_key(value)
            tds.append(
                f'<td class="{"num" if numeric[column] else "text"}" data-v="{key}">{shown}</td>'
            )
        rows.append("<tr>" + "".join(tds) + "</tr>")
    return (
        f'<table class="{classes}"><thead><tr>{head}</tr></thead>'
        f'<tbody>{"".join(rows)}</tbody></table>'
    )


def definition_list(items: Iterable[tuple[str, str]]) -> str:
    """``<dl>`` of (term, already-HTML description) pairs."""
    body = "".join(f"<dt>{escape(term)}</dt><dd>{desc}</dd>" for term, desc in items)
    return f'<dl class="facts">{body}</dl>'


def _sort_key(value: object) -> str:
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int | float):
        return "" if isinstance(value, float) and math.isnan(value) else repr(float(value))
    return escape(str(value))
