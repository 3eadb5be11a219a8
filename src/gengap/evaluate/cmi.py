"""The conditional mutual information of Jiang et al. 2020, and exactly as the PGDL scorer
computes it.

For an ordered pair of models (i, j) let V_g = [g_i > g_j] and V_μ = [μ_i > μ_j]: every
ordered pair counts, self-pairs included, and ties fall in the (−gap, −measure) cell. For a
set S of hyperparameters the conditioning variable U_S is the pair of values (h(i), h(j)) of
both models for every h in S. The normalised conditional MI is

    Î_S = Σ_u p(u) I(V_μ; V_g | U_S = u) / Σ_u p(u) H(V_g | U_S = u)

(logs base 2). Jiang et al. report K(μ) = min over |S| ≤ 2 (and tabulate |S| = 0, 1, 2); the
PGDL competition scored min over the ordered pairs of distinct hyperparameters (|S| = 2
exactly), averaged over tasks and multiplied by 100. Both take a complete factorial grid
(see :mod:`gengap.evaluate.grid`), on which every bin u holds the same number of pairs.

Values here are fractions in [0, 1]; tables and the CLI show them ×100 as the competition did.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import combinations, permutations
from typing import Any, Literal

import numpy as np
import pandas as pd

from gengap.errors import GengapError
from gengap.evaluate.grid import (
    check_grid,
    grid_levels,
    largest_complete_subgrid,
    level_index,
)
from gengap.evaluate.order import as_scored, turned_round

Grid = Literal["strict", "largest", "none"]
_CHUNK_PAIRS = 2_000_000  # ordered pairs per chunk: bounds memory on big zoos


def conditional_mi(
    frame: pd.DataFrame,
    measure: str,
    hyperparameters: Sequence[str],
    target: str = "gap",
    *,
    max_conditioning: int = 2,
    pgdl: bool = False,
    grid: Grid = "strict",
    levels: Mapping[str, Sequence[Any]] | None = None,
    replicates: str | None = None,
) -> float:
    """The normalised conditional mutual information between the signs of pairwise
    differences of ``measure`` and of ``target``, minimised over conditioning sets.

    - ``pgdl=False`` (Jiang et al. 2020): the minimum over every set S of hyperparameters
      with |S| ≤ ``max_conditioning`` (0, 1 or 2), bins weighted by their share of pairs.
    - ``pgdl=True``: exactly the competition scorer's ``conditional_mutual_information``:
      |S| = 2 only, every ordered pair of distinct hyperparameters in the given order, bins
      keyed by the scorer's string concatenation of the values (so ``levels`` should hold
      the original ``possible_values``), each bin's MI and gap entropy (with its 1e-12)
      averaged with equal weight, and the running ``min`` of Python (a NaN pair resets it).
      With fewer than two hyperparameters it returns ``inf``, as the scorer does.

    ``grid``: ``"strict"`` refuses an incomplete or non-unique grid with the scorer's message;
    ``"largest"`` scores the largest complete sub-grid; ``"none"`` skips the check.
    ``levels`` gives each axis's possible values (default: those present). ``replicates``
    names a column (e.g. ``seed``) whose values repeat every cell; it is part of the grid
    check but never conditioned on.

    Returns a fraction in [0, 1] (the scorer's task score); NaN when undefined (for instance
    when the gap is constant in every bin). Without ``pgdl``, a run whose measure is NaN is
    left out, ±inf is a value at its end of the order, and ``test_acc`` is read turned round,
    as ``test_error`` is (:func:`.order.as_scored`).
    """
    if pgdl:
        return pgdl_cmi(frame, measure, hyperparameters, target, grid=grid, levels=levels)
    values = cmi_by_set(
        frame, measure, hyperparameters, target, max_conditioning=max_conditioning,
        grid=grid, levels=levels, replicates=replicates,
    )
    finite = [v for v in values.values() if np.isfinite(v)]
    return float(min(finite)) if finite else float("nan")


def cmi_by_set(
    frame: pd.DataFrame,
    measure: str,
    hyperparameters: Sequence[str],
    target: str = "gap",
    *,
    max_conditioning: int = 2,
    grid: Grid = "strict",
    levels: Mapping[str, Sequence[Any]] | None = None,
    replicates: str | None = None,
) -> dict[tuple[str, ...], float]:
    """Î_S for every set S of hyperparameters with |S| ≤ ``max_conditioning`` (Jiang et al.
    2020; see :func:`conditional_mi` for the arguments). Keys are sorted tuples of names;
    ``()`` is the unconditioned MI. The values are read as :func:`.order.as_scored` says:
    ±inf at its end of the order, ``test_acc`` turned round."""
    if not 0 <= max_conditioning <= 2:
        raise GengapError(f"max_conditioning must be 0, 1 or 2, not {max_conditioning}")
    frame = as_scored(frame, measure, target)
    data, levels = _prepare(frame, measure, hyperparameters, target, grid, levels, replicates)
    g = data[target].to_numpy(dtype=float)
    m = data[measure].to_numpy(dtype=float)
    codes = {h: _codes(data[h].tolist(), levels[h]) for h in hyperparameters}
    sets = [
        tuple(s)
        for size in range(max_conditioning + 1)
        for s in combinations(hyperparameters, size)
    ]
    return {s: _jiang_ratio(g, m, [codes[h] for h in s], [len(levels[h]) for h in s])
            for s in sets}


def cmi_by_size(
    frame: pd.DataFrame,
    measure: str,
    hyperparameters: Sequence[str],
    target: str = "gap",
    **options: Any,
) -> dict[int, float]:
    """min over sets of each size |S| = 0, 1, 2 (the columns of Jiang et al.'s CMI table);
    NaN for a size no set has (|S| = 2 with one hyperparameter)."""
    values = cmi_by_set(frame, measure, hyperparameters, target, **options)
    out: dict[int, float] = {}
    for size in range(options.get("max_conditioning", 2) + 1):
        finite = [v for s, v in values.items() if len(s) == size and np.isfinite(v)]
        out[size] = float(min(finite)) if finite else float("nan")
    return out


def pgdl_cmi(
    frame: pd.DataFrame,
    measure: str,
    hyperparameters: Sequence[str],
    target: str = "gap",
    *,
    grid: Grid = "strict",
    levels: Mapping[str, Sequence[Any]] | None = None,
) -> float:
    """The PGDL competition scorer's task score (a fraction; the leaderboard shows ×100).
    See :func:`conditional_mi` with ``pgdl=True``; ``test_acc`` is read turned round, as the
    other CMI functions read it, and values as they are, as the scorer reads them."""
    data, levels = _prepare(turned_round(frame, target), measure, hyperparameters, target, grid,
                            levels, None, drop_missing=False)
    g = data[target].to_numpy(dtype=float)
    m = data[measure].to_numpy(dtype=float)
    strings = {h: [str(v) for v in data[h].tolist()] for h in hyperparameters}
    best = float("inf")
    for h1, h2 in permutations(hyperparameters, 2):
        value = _pgdl_ratio(g, m, strings[h1], strings[h2], levels[h1], levels[h2])
        best = best if best < value else value  # Python's min(value, best), NaN included
    return best


# -- shared preparation ---------------------------------------------------------------------


def _prepare(
    frame: pd.DataFrame,
    measure: str,
    hyperparameters: Sequence[str],
    target: str,
    grid: Grid,
    levels: Mapping[str, Sequence[Any]] | None,
    replicates: str | None,
    drop_missing: bool = True,
) -> tuple[pd.DataFrame, dict[str, list[Any]]]:
    for column in (measure, target):
        if column not in frame.columns:
            raise GengapError(f"no column {column!r} in the table")
    if len(set(hyperparameters)) != len(hyperparameters):
        raise GengapError(f"hyperparameters repeat: {list(hyperparameters)}")
    data = frame
    if drop_missing:  # a run without a value cannot be ranked; the grid check then says so
        keep = np.isfinite(frame[measure].to_numpy(dtype=float)) & np.isfinite(
            frame[target].to_numpy(dtype=float)
        )
        data = frame[keep]
    all_levels = grid_levels(data if levels is None else frame, hyperparameters, levels)
    if grid == "strict":
        check_grid(data, hyperparameters, all_levels, replicates)
    elif grid == "largest":
        data, all_levels = largest_complete_subgrid(data, hyperparameters, all_levels, replicates)
        check_grid(data, hyperparameters, all_levels, replicates)
    elif grid != "none":
        raise GengapError(f"grid must be strict, largest or none, not {grid!r}")
    if len(data) == 0:
        raise GengapError(f"no model has both {measure!r} and {target!r}")
    return data, all_levels


def _codes(values: list[Any], levels: Sequence[Any]) -> np.ndarray:
    lookup = list(levels)
    out = np.empty(len(values), dtype=np.int64)
    for i, v in enumerate(values):
        try:
            out[i] = level_index(lookup, v)
        except ValueError:
            raise GengapError(f"value {v!r} is not among the levels {lookup!r}") from None
    return out


def _pair_cells(g: np.ndarray, m: np.ndarray, rows: slice) -> np.ndarray:
    """Cell of each ordered pair (i in rows, j): 0 (+gap,+μ), 1 (+gap,−μ), 2 (−gap,+μ),
    3 (−gap,−μ); ties and self-pairs are '−' on their side."""
    gap_minus = ~(g[rows, None] > g[None, :])
    measure_minus = ~(m[rows, None] > m[None, :])
    return (2 * gap_minus + measure_minus).astype(np.int64)


def _bin_counts(
    g: np.ndarray, m: np.ndarray, codes: list[np.ndarray], sizes: list[int]
) -> np.ndarray:
    """(bins, 4) counts of ordered pairs per bin of U_S and per cell, in row chunks."""
    n = len(g)
    bins = int(np.prod([k * k for k in sizes])) if sizes else 1
    counts = np.zeros(bins * 4, dtype=np.int64)
    step = max(1, _CHUNK_PAIRS // max(n, 1))
    for start in range(0, n, step):
        rows = slice(start, min(n, start + step))
        key = np.zeros((rows.stop - rows.start, n), dtype=np.int64)
        for c, k in zip(codes, sizes, strict=True):
            key = (key * k + c[rows, None]) * k + c[None, :]
        flat = key * 4 + _pair_cells(g, m, rows)
        counts += np.bincount(flat.ravel(), minlength=bins * 4)
    return counts.reshape(bins, 2, 2)


def _mi_and_entropy(table: np.ndarray, epsilon: float) -> tuple[np.ndarray, np.ndarray]:
    """Per bin of a (bins, 2, 2) table [gap, measure]: I(V_μ; V_g) and H(V_g) in bits.
    ``epsilon`` is added inside the entropy's log (the scorer uses 1e-12). Empty bins: NaN."""
    total = table.sum(axis=(1, 2)).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        joint = table / total[:, None, None]
        p_gap = joint.sum(axis=2)
        p_measure = joint.sum(axis=1)
        ratio = joint / (p_gap[:, :, None] * p_measure[:, None, :])
        mi = np.where(joint > 0, joint * np.log2(np.where(joint > 0, ratio, 1.0)), 0.0).sum((1, 2))
        if epsilon:
            h = -(p_gap * np.log2(p_gap + epsilon)).sum(axis=1)
        else:
            h = -np.where(p_gap > 0, p_gap * np.log2(np.where(p_gap > 0, p_gap, 1.0)), 0.0).sum(1)
    empty = total == 0
    mi[empty], h[empty] = np.nan, np.nan
    return mi, h


def _jiang_ratio(
    g: np.ndarray, m: np.ndarray, codes: list[np.ndarray], sizes: list[int]
) -> float:
    table = _bin_counts(g, m, codes, sizes)
    weight = table.sum(axis=(1, 2)).astype(float)
    used = weight > 0
    mi, h = _mi_and_entropy(table[used], epsilon=0.0)
    denominator = float((weight[used] * h).sum())
    if denominator <= 0:
        return float("nan")
    return float((weight[used] * mi).sum() / denominator)


def _pgdl_ratio(
    g: np.ndarray,
    m: np.ndarray,
    s1: list[str],
    s2: list[str],
    levels1: Sequence[Any],
    levels2: Sequence[Any],
) -> float:
    """One (h1, h2) term of the scorer: bins named by str(v)+str(w) for h1 then h2, in the
    order the scorer lists them; a duplicate name maps to its last position (leaving an
    empty, NaN bin), and a pair whose name is not listed is skipped."""
    pairs1 = [str(v) + str(w) for v in levels1 for w in levels1]
    pairs2 = [str(v) + str(w) for v in levels2 for w in levels2]
    names = [a + b for a in pairs1 for b in pairs2]
    position = {name: i for i, name in enumerate(names)}
    # Each model's value strings, coded; the bin of a pair is looked up once per code tuple.
    u1, c1 = np.unique(np.array(s1, dtype=object), return_inverse=True)
    u2, c2 = np.unique(np.array(s2, dtype=object), return_inverse=True)
    lookup = np.full((len(u1), len(u1), len(u2), len(u2)), -1, dtype=np.int64)
    for a, va in enumerate(u1):
        for b, vb in enumerate(u1):
            for c, vc in enumerate(u2):
                for d, vd in enumerate(u2):
                    lookup[a, b, c, d] = position.get(va + vb + vc + vd, -1)
    bins = lookup[c1[:, None], c1[None, :], c2[:, None], c2[None, :]]
    cells = _pair_cells(g, m, slice(0, len(g)))
    keep = bins >= 0
    flat = bins[keep] * 4 + cells[keep]
    table = np.bincount(flat, minlength=len(names) * 4).reshape(len(names), 2, 2)
    mi, h = _mi_and_entropy(table, epsilon=1e-12)
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.float64(mi.mean()) / np.float64(h.mean()))
