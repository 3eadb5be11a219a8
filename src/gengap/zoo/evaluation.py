"""Scoring a zoo's stored measures: the glue between the store and :mod:`gengap.evaluate`."""

from __future__ import annotations

import pandas as pd

from gengap.errors import GengapError
from gengap.evaluate import ranking_table
from gengap.zoo.store import Store


def evaluate_zoo(store: Store, target: str = "gap") -> pd.DataFrame:
    """The ranking table of every stored measure over the zoo's finished runs."""
    frame = store.frame()
    names = sorted(store.measure_names())
    if frame.empty or not names:
        raise GengapError(f"{store.root}: no measured runs yet (run `gengap measure` first)")
    done = frame[frame["status"] == "done"]
    if target not in done.columns:
        raise GengapError(f"unknown target {target!r} (columns: gap, test_acc, test_loss, ...)")
    return ranking_table(done, names, store.zoo.hyperparameters, target=target)
