"""How the sign-based metrics read a measure and a target: by the order of the values, with
infinities at their ends, and with a target that grows as generalization worsens."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from gengap.evaluate.targets import ORIENTATION


def ranked_infinities(values: np.ndarray) -> np.ndarray:
    """``values`` (floats) as their ranks when any is ±inf (NaN stay NaN), else as they are:
    every metric here compares values by their order only, so an infinity (an inverse margin
    at γ = 0, a path norm that overflowed) keeps its place at the end it points to, where a
    difference of two infinities would be NaN."""
    values = np.asarray(values, dtype=float)
    return rankdata(values, nan_policy="omit") if np.isinf(values).any() else values


def as_scored(frame: pd.DataFrame, measure: str, target: str) -> pd.DataFrame:
    """``frame`` as the CMI and the sign error read it: the infinities of ``measure`` and
    ``target`` ranked, and a target that grows with better generalization (``test_acc``)
    turned round, so that they read it as they read ``test_error`` (the CMI's ties and
    self-pairs go to one cell, and the sign error would count agreement as error). Columns it
    lacks are left to the caller."""
    changed = {}
    for column in (measure, target):
        if column in frame.columns and pd.api.types.is_numeric_dtype(frame[column]):
            values = frame[column].to_numpy(dtype=float)
            if np.isinf(values).any():
                changed[column] = ranked_infinities(values)
    frame = frame.assign(**changed) if changed else frame
    return turned_round(frame, target)


def turned_round(frame: pd.DataFrame, target: str) -> pd.DataFrame:
    """``frame`` with a ``target`` that grows with better generalization (``test_acc``)
    negated, so that it grows as generalization worsens, as ``gap`` and ``test_error`` do."""
    if target in frame.columns and ORIENTATION.get(target, 1) < 0:
        return frame.assign(**{target: -frame[target]})
    return frame
