"""What a measure is asked to rank: the generalization gap, the test error or accuracy."""

from __future__ import annotations

import pandas as pd

from gengap.errors import GengapError

TARGETS = ("gap", "test_error", "test_acc")
# the accuracies each derived target is made of
NEEDS = {"gap": ("train_acc", "test_acc"), "test_error": ("test_acc",),
         "test_acc": ("test_acc",)}
# +1: a good complexity measure grows with the target; -1: it shrinks (test accuracy).
ORIENTATION = {"gap": 1, "test_error": 1, "test_loss": 1, "test_acc": -1}


class UnknownTarget(GengapError):
    """A target that is neither a derived one nor a column: a misspelt name rather than data
    that lack something, which the CLI reports as a bad --target."""


def with_target(frame: pd.DataFrame, target: str) -> pd.DataFrame:
    """``frame`` with the column ``target``: ``gap`` (train − test accuracy) and
    ``test_error`` (1 − test accuracy) are derived when absent; any other column is taken as
    it is."""
    if not isinstance(target, str):
        raise GengapError(f"target: one column name, not {target!r}")
    if target in frame.columns:
        return frame
    if target == "gap" and {"train_acc", "test_acc"} <= set(frame.columns):
        return frame.assign(gap=frame["train_acc"] - frame["test_acc"])
    if target == "test_error" and "test_acc" in frame.columns:
        return frame.assign(test_error=1.0 - frame["test_acc"])
    if target in TARGETS:  # a known target, but the runs lack what it is made of
        lacking = [c for c in NEEDS[target] if c not in frame.columns]
        raise GengapError(f"no {target}: the models record no {' or '.join(lacking)}")
    raise UnknownTarget(
        f"unknown target {target!r}: the table has no such column (targets: "
        f"{', '.join(TARGETS)}, or any metric column such as test_loss)"
    )
