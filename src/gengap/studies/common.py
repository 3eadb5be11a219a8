"""Small helpers the studies share: the chance baseline of a data set and seed means."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from gengap.data import load, summarize
from gengap.specs import DataSpec


def chance(data: DataSpec) -> float:
    """Test accuracy of always predicting the training split's majority class (the baseline
    that accuracies are read against, not 1/classes: PVR's min and max skew the labels)."""
    return summarize(load(data)).majority_test_acc


def seed_mean(frame: pd.DataFrame, by: Sequence[str], columns: Sequence[str]) -> pd.DataFrame:
    """Mean of ``columns`` over seeds within each ``by`` group (finished runs only), plus the
    number of runs in ``runs``."""
    done = frame[frame["status"] == "done"]
    grouped = done.groupby(list(by), sort=False, dropna=False)
    out = grouped[list(columns)].mean()
    out["runs"] = grouped.size()
    return out.reset_index()
