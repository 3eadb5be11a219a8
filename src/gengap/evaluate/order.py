"""How the sign-based metrics read a measure and a target: by the order of the values, with
infinities at their ends, and with a target that grows as generalization worsens."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from gengap.evaluate.targets import ORIENTATION
from gengap.number_format import counted


def ranked_infinities(values: np.ndarray) -> np.ndarray:
    """``values`` (floats) as their ranks when any is ±inf (NaN stay NaN), else as they are:
    every metric here compares values by their order only, so an infinity (an inverse margin
    at γ = 0, a path norm that overflowed) keeps its place at the end it points to, where a
    difference of two infinities would be NaN."""
    values = np.asarray(values, dtype=float)
    return rankdata(values, nan_policy="omit") if np.isinf(values).any() else values


def infinities_ranked(frame: pd.DataFrame, columns: Sequence[str],
                      notes: list[str] | None = None) -> pd.DataFrame:
    """``frame`` with each numeric column of ``columns`` that has ±inf values (an inverse
    margin at γ = 0, a path norm that overflowed) replaced by its ranks
    (:func:`ranked_infinities`), so that its infinities keep their places at the ends, where
    dropping them with the NaN would leave those runs out. With ``notes``, a note per such
    column goes to it."""
    for name in columns:
        if not pd.api.types.is_numeric_dtype(frame[name]):
            continue  # refused by the metrics with the column's name
        values = frame[name].to_numpy(dtype=float)
        infinite = int(np.isinf(values).sum())
        if infinite:
            frame = frame.assign(**{name: ranked_infinities(values)})
            if notes is not None:
                notes.append(f"{name}: {counted(infinite, 'run')} with an infinite value, "
                             "ranked at the end it points to rather than dropped")
    return frame


def as_scored(frame: pd.DataFrame, measure: str, target: str) -> pd.DataFrame:
    """``frame`` as the CMI and the sign error read it: the infinities of ``measure`` and
    ``target`` ranked, and a target that grows with better generalization (``test_acc``)
    turned round, so that they read it as they read ``test_error`` (the CMI's ties and
    self-pairs go to one cell, and the sign error would count agreement as error). Columns it
    lacks are left to the caller."""
    present = list(dict.fromkeys(c for c in (measure, target) if c in frame.columns))
    return turned_round(infinities_ranked(frame, present), target)


def turned_round(frame: pd.DataFrame, target: str) -> pd.DataFrame:
    """``frame`` with a ``target`` that grows with better generalization (``test_acc``)
    negated, so that it grows as generalization worsens, as ``gap`` and ``test_error`` do."""
    if target in frame.columns and ORIENTATION.get(target, 1) < 0:
        return frame.assign(**{target: -frame[target]})
    return frame
