"""Shared processing after a source: subsampling the training split, normalization, tensors."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from pydantic import ValidationError
from sklearn.model_selection import train_test_split

from gengap.data.sources import sources
from gengap.errors import GengapError
from gengap.specs import DataSpec, first_problem


@dataclass(frozen=True)
class Splits:
    """Train and test tensors of one data set (inputs float32, labels int64)."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one input, without the batch dimension."""
        return tuple(self.x_train.shape[1:])


def data_dir(explicit: str | Path | None = None) -> Path | None:
    """Where local data files live: the argument, else ``$GENGAP_DATA``, else none."""
    chosen = explicit or os.environ.get("GENGAP_DATA")
    return Path(chosen) if chosen else None


def load(spec: DataSpec, directory: str | Path | None = None) -> Splits:
    """Build the train/test tensors that ``spec`` describes; deterministic in ``spec.seed``.

    ``train_fraction`` keeps a stratified share of the training split (the test split is never
    subsampled). ``normalize`` standardizes inputs with the mean and standard deviation of the
    kept training inputs, applied to both splits.
    """
    source = sources.get(spec.name)
    try:
        options = source.options.model_validate(spec.options)
    except ValidationError as err:
        raise GengapError(f"data source {spec.name!r}: option {first_problem(err)}") from None
    raw = source.make(spec, options, data_dir(directory))
    x_train, y_train = raw.x_train, raw.y_train
    if spec.train_fraction < 1.0:
        x_train, _, y_train, _ = train_test_split(
            x_train, y_train, train_size=spec.train_fraction, stratify=y_train,
            random_state=spec.seed,
        )
    x_test = raw.x_test
    if spec.normalize:
        mean, std = float(x_train.mean()), float(x_train.std()) or 1.0
        x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    return Splits(
        x_train=torch.from_numpy(np.ascontiguousarray(x_train, dtype=np.float32)),
        y_train=torch.from_numpy(np.ascontiguousarray(y_train, dtype=np.int64)),
        x_test=torch.from_numpy(np.ascontiguousarray(x_test, dtype=np.float32)),
        y_test=torch.from_numpy(np.ascontiguousarray(raw.y_test, dtype=np.int64)),
        num_classes=raw.num_classes,
    )
