"""Factorial grids: the PGDL scorer's completeness check, and the largest complete sub-grid.

The competition's scorer refuses a task unless its models fill every cell of the product of
each hyperparameter's possible values exactly once; the conditional mutual information is only
comparable across measures and tasks on such a grid. :func:`check_grid` applies the same test
(with the scorer's messages); :func:`largest_complete_subgrid` drops hyperparameter values until
what is left is complete, keeping as many models as possible.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd

from gengap.errors import GengapError
from gengap.evaluate.columns import check_columns

NOT_COMPLETE = "The data are not complete!"
NOT_UNIQUE = "The data are not unique!"


def grid_levels(
    frame: pd.DataFrame,
    hyperparameters: Sequence[str],
    levels: Mapping[str, Sequence[Any]] | None = None,
) -> dict[str, list[Any]]:
    """The values of each axis: ``levels[h]`` when given (the PGDL ``possible_values``), else
    the values present in ``frame``, sorted."""
    out = {}
    check_columns(frame, hyperparameters, "hyperparameter")
    for h in hyperparameters:
        if levels is not None and h in levels:
            out[h] = list(levels[h])
        else:
            present = [plain_value(v) for v in pd.unique(frame[h])]
            try:
                out[h] = sorted(present)
            except TypeError:  # mixed types: keep first-seen order
                out[h] = list(present)
    return out


def cell_counts(
    frame: pd.DataFrame,
    hyperparameters: Sequence[str],
    levels: Mapping[str, Sequence[Any]],
    replicates: str | None = None,
) -> np.ndarray:
    """Models per grid cell, an array with one axis per hyperparameter (and one for the
    replicate column when given). A model whose value is not among its axis's levels is an
    error, as ``list.index`` makes it in the scorer."""
    axes = list(hyperparameters) + ([replicates] if replicates else [])
    values = {h: list(levels[h]) for h in hyperparameters}
    if replicates:
        values[replicates] = sorted(plain_value(v) for v in pd.unique(frame[replicates]))
    shape = [len(values[h]) for h in axes]
    counts = np.zeros(shape, dtype=np.int64)
    index = np.empty((len(frame), len(axes)), dtype=np.int64)
    for k, h in enumerate(axes):
        lookup = values[h]
        for i, v in enumerate(frame[h].tolist()):
            try:
                index[i, k] = level_index(lookup, v)
            except ValueError:
                raise GengapError(
                    f"hyperparameter {h!r}: value {v!r} of model {frame.index[i]!r} is not "
                    f"among its possible values {lookup!r}"
                ) from None
    np.add.at(counts, tuple(index.T), 1)
    return counts


def check_grid(
    frame: pd.DataFrame,
    hyperparameters: Sequence[str],
    levels: Mapping[str, Sequence[Any]] | None = None,
    replicates: str | None = None,
    where: str = "",
    remedy: str = "grid='largest' (--grid largest)",
) -> None:
    """Raise :class:`GengapError` unless every cell of the grid holds exactly one model (or,
    with ``replicates``, exactly one model per replicate value, e.g. per seed). ``remedy``:
    how the caller's user scores the largest complete sub-grid instead.

    The message starts with the PGDL scorer's own ("The data are not complete!" /
    "The data are not unique!") and names the first offending cell.
    """
    if not hyperparameters:
        return
    levels = grid_levels(frame, hyperparameters, levels)
    counts = cell_counts(frame, hyperparameters, levels, replicates)
    prefix = f"{where}: " if where else ""
    axes = list(hyperparameters) + ([replicates] if replicates else [])
    empty = np.argwhere(counts == 0)
    if len(empty):
        cell = _describe(empty[0], axes, levels, frame, replicates)
        raise GengapError(
            f"{prefix}{NOT_COMPLETE} {len(empty)} of {counts.size} grid cells have no model "
            f"(first: {cell}); score the largest complete sub-grid instead with {remedy}"
        )
    many = np.argwhere(counts > 1)
    if len(many):
        cell = _describe(many[0], axes, levels, frame, replicates)
        hint = "" if replicates or "--grid" not in remedy else \
            "; name the replicate column (e.g. seed) if runs repeat"
        raise GengapError(
            f"{prefix}{NOT_UNIQUE} {len(many)} grid cells hold more than one model "
            f"(first: {cell}){hint}"
        )


def largest_complete_subgrid(
    frame: pd.DataFrame,
    hyperparameters: Sequence[str],
    levels: Mapping[str, Sequence[Any]] | None = None,
    replicates: str | None = None,
) -> tuple[pd.DataFrame, dict[str, list[Any]]]:
    """The rows of the largest complete sub-grid and the axis values it keeps.

    A sub-grid keeps a non-empty subset of each axis's values; it is complete when every cell
    of their product holds a model (with ``replicates``: every replicate value). Among
    complete sub-grids the one with the most cells wins (ties: the first found, trying larger
    subsets first and lower values first). Cells with more than one model stay non-unique
    and are refused later by :func:`check_grid`.
    """
    return largest_complete_subgrids(frame, hyperparameters, levels, replicates, most=1)[0]


def largest_complete_subgrids(
    frame: pd.DataFrame,
    hyperparameters: Sequence[str],
    levels: Mapping[str, Sequence[Any]] | None = None,
    replicates: str | None = None,
    most: int = 3,
) -> list[tuple[pd.DataFrame, dict[str, list[Any]]]]:
    """Up to ``most`` complete sub-grids of the largest size, as (rows, axis values kept): the
    first is :func:`largest_complete_subgrid`'s; the others are as large, and a score computed
    on them can differ (the choice among them is arbitrary)."""
    if frame.empty:  # else an empty replicate axis would make every cell "complete"
        raise GengapError(f"{NOT_COMPLETE} no model at all in the grid")
    levels = grid_levels(frame, hyperparameters, levels)
    if not hyperparameters:
        return [(frame, levels)]
    return [(_rows_in(frame, kept), kept)
            for kept in _largest(frame, hyperparameters, levels, replicates, most)]


def _largest(frame: pd.DataFrame, hyperparameters: Sequence[str],
             levels: dict[str, list[Any]], replicates: str | None, most: int
             ) -> list[dict[str, list[Any]]]:
    present = cell_counts(frame, hyperparameters, levels, replicates) > 0
    if replicates:  # a cell counts only when every replicate is there
        present = present.all(axis=-1)
    best_size, found = _search(present, most)
    if best_size == 0:
        raise GengapError(f"{NOT_COMPLETE} no model at all in the grid")
    return [{h: [levels[h][i] for i in idx] for h, idx in zip(hyperparameters, sets, strict=True)}
            for sets in found]


def _rows_in(frame: pd.DataFrame, kept: Mapping[str, Sequence[Any]]) -> pd.DataFrame:
    mask = np.ones(len(frame), dtype=bool)
    for h, values in kept.items():
        mask &= np.array([_among(values, v) for v in frame[h].tolist()], dtype=bool)
    return frame[mask]


def _search(present: np.ndarray, most: int = 1
            ) -> tuple[int, list[tuple[tuple[int, ...], ...]]]:
    """The largest complete sub-grids' size and up to ``most`` of them (each a tuple of kept
    indices per axis, in the order they are found). Branch and bound over the subsets of the
    first axis: a subset S leaves the grid ``present[S].all(axis=0)`` for the other axes, whose
    best is at most its number of filled cells."""
    if present.ndim == 0:
        return int(bool(present)), [()]
    best_size = 0
    found: list[tuple[tuple[int, ...], ...]] = [tuple(tuple(range(n)) for n in present.shape)]
    n = present.shape[0]
    for k in range(n, 0, -1):
        for subset in combinations(range(n), k):
            rest = present[list(subset)].all(axis=0)
            bound = k * int(rest.sum())
            # nothing filled is left (no sub-grid at all), or nothing better or, with enough
            # found already, as good
            if not bound or bound < best_size or (bound == best_size and len(found) >= most):
                continue
            size, subs = _search(rest, most)
            if k * size > best_size:
                best_size, found = k * size, []
            if size and k * size == best_size:
                found += [(subset, *sub) for sub in subs][: most - len(found)]
    return best_size, found


def _describe(
    cell: np.ndarray,
    axes: Sequence[str],
    levels: Mapping[str, Sequence[Any]],
    frame: pd.DataFrame,
    replicates: str | None,
) -> str:
    parts = []
    for k, h in enumerate(axes):
        values = list(levels[h]) if h in levels else sorted(
            plain_value(v) for v in pd.unique(frame[h])
        )
        parts.append(f"{h}={values[cell[k]]!r}")
    return ", ".join(parts)


def level_index(levels: Sequence[Any], value: Any) -> int:
    """``levels.index(value)``, where a missing value (NaN) is one value, equal to itself: a
    table's unrecorded setting is one level of its axis. ValueError when it is not there."""
    if not _missing(value):
        return list(levels).index(value)
    for i, level in enumerate(levels):
        if _missing(level):
            return i
    raise ValueError(f"{value!r} is not in the levels")


def _among(levels: Sequence[Any], value: Any) -> bool:
    try:
        level_index(levels, value)
    except ValueError:
        return False
    return True


def _missing(value: Any) -> bool:
    return isinstance(value, float | np.floating) and value != value


def plain_value(value: Any) -> Any:
    """numpy scalars as Python values (messages show 1, not np.int64(1))."""
    return value.item() if isinstance(value, np.generic) else value
