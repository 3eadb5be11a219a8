"""Pointer value retrieval on digit sequences (Zhang, Raghu, Kleinberg & Bengio 2021).

A sequence is a pointer token followed by ``length`` value digits 0..9. The pointer p selects
the window of ``window`` values starting at value position p (p is drawn uniformly among the
positions where the window fits, or among all positions with ``wrap``); the label aggregates
that window: ``mod_sum`` (sum mod 10), ``min``, ``max``, ``median`` (the lower middle value for
even windows) or ``majority`` (the most frequent digit, the smallest on a tie).

Holdout (distribution shift): the held-out patterns are the first ``holdout`` permutations of
(0, 1, ..., window-1) in lexicographic order. In training, a sequence whose window equals a
held-out pattern has all its value digits shifted by +1 mod 10 (its window then contains the
digit ``window``, so it is no held-out pattern). The shifted test set overwrites every window
with a held-out pattern chosen uniformly.

Inputs are int64 tokens (N, 1 + length): the pointer, then the values, all below
``vocab_size`` = max(10, number of pointer positions).
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from gengap.data.randomize import knob_rng
from gengap.data.sources import RawSplits, SourceOptions, register_source
from gengap.specs import DataSpec

Aggregation = Literal["mod_sum", "min", "max", "median", "majority"]


class PvrVectorOptions(SourceOptions):
    window: int = Field(1, ge=1, description="values aggregated (the task's complexity m + 1)")
    aggregation: Aggregation = Field("mod_sum", description="mod_sum, min, max, median, majority")
    length: int = Field(10, ge=1, description="value digits after the pointer")
    wrap: bool = Field(False, description="windows wrap around the end of the sequence")
    holdout: int = Field(0, ge=0, description="held-out window permutations (0: no shift)")
    shifted_test: bool = Field(
        True, description="with holdout, the test split holds only held-out windows"
    )
    n_train: int = Field(10000, ge=1, description="training sequences")
    n_test: int = Field(2000, ge=1, description="test sequences")

    @model_validator(mode="after")
    def _check(self) -> PvrVectorOptions:
        if self.window > self.length:
            raise ValueError(f"window {self.window} is longer than length {self.length}")
        if self.holdout:
            if self.window > 9:
                raise ValueError("holdout needs window <= 9")
            if self.holdout > math.factorial(self.window):
                raise ValueError(
                    f"holdout {self.holdout}: a window of {self.window} has only "
                    f"{math.factorial(self.window)} permutations"
                )
        return self

    @property
    def pointers(self) -> int:
        """How many pointer values there are."""
        return self.length if self.wrap else self.length - self.window + 1


def held_out_patterns(window: int, holdout: int) -> np.ndarray:
    """The first ``holdout`` permutations of (0..window-1), lexicographic, (holdout, window)."""
    perms = itertools.islice(itertools.permutations(range(window)), holdout)
    return np.array(list(perms), dtype=np.int64).reshape(holdout, window)


def window_index(pointer: np.ndarray, window: int, length: int) -> np.ndarray:
    """Value positions of each example's window, (N, window)."""
    return (pointer[:, None] + np.arange(window)) % length


def aggregate(windows: np.ndarray, aggregation: str) -> np.ndarray:
    """The label of each window (rows of digits)."""
    if aggregation == "mod_sum":
        return windows.sum(axis=1) % 10
    if aggregation == "min":
        return windows.min(axis=1)
    if aggregation == "max":
        return windows.max(axis=1)
    if aggregation == "median":
        return np.sort(windows, axis=1)[:, (windows.shape[1] - 1) // 2]
    counts = (windows[:, :, None] == np.arange(10)).sum(axis=1)
    return counts.argmax(axis=1)  # argmax takes the first maximum: the smallest digit


def make_pvr_vector(
    n: int, options: PvrVectorOptions, split: Literal["train", "shifted"], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` sequences (pointer, values...) and their labels."""
    pointer = rng.integers(options.pointers, size=n)
    values = rng.integers(10, size=(n, options.length))
    where = window_index(pointer, options.window, options.length)
    rows = np.arange(n)[:, None]
    if options.holdout:
        patterns = held_out_patterns(options.window, options.holdout)
        if split == "shifted":
            values[rows, where] = patterns[rng.integers(len(patterns), size=n)]
        else:
            codes = values[rows, where] @ 10 ** np.arange(options.window)
            held = np.isin(codes, patterns @ 10 ** np.arange(options.window))
            values[held] = (values[held] + 1) % 10
    labels = aggregate(values[rows, where], options.aggregation)
    return np.concatenate([pointer[:, None], values], axis=1), labels.astype(np.int64)


@register_source(
    "pvr-vector", "pointer value retrieval on digit sequences (tokens), with holdout shift",
    options=PvrVectorOptions,
)
def make_pvr_source(spec: DataSpec, options: PvrVectorOptions, data_dir: Path | None) -> RawSplits:
    x_train, y_train = make_pvr_vector(
        options.n_train, options, "train", knob_rng(spec.seed, "pvr-vector/train")
    )
    test_split = "shifted" if options.holdout and options.shifted_test else "train"
    x_test, y_test = make_pvr_vector(
        options.n_test, options, test_split, knob_rng(spec.seed, "pvr-vector/test")
    )
    return RawSplits(
        x_train, y_train, x_test, y_test, num_classes=10, vocab_size=max(10, options.pointers)
    )
