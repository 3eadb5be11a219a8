"""MNIST-1D (Greydanus & Kobak), generated offline by the ``mnist1d`` package's
``make_dataset``: ten 1-D digit templates padded, scaled, translated, sheared and noised into
sequences of 40 values; 4,000/1,000 examples by default, inputs (N, 40) float32.

The generator seed is the DataSpec's ``seed``: ``seed = 42`` with the default options gives
the package's published dataset (the one its frozen pickle holds).
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
from pydantic import Field, model_validator

from gengap.data.randomize import seed32
from gengap.data.sources import RawSplits, SourceOptions, register_source
from gengap.errors import GengapError
from gengap.specs import DataSpec


class Mnist1dOptions(SourceOptions):
    """The arguments of ``mnist1d.data.make_dataset`` (the package's defaults)."""

    # not refused when no multiple of 10: zoos stored with such a value must stay readable
    num_samples: int = Field(5000, ge=10, description="examples in all (10 classes, balanced; "
                             "rounded down to a multiple of 10)")
    train_split: float = Field(0.8, gt=0, lt=1, description="share of examples for training")
    padding_min: int = Field(36, ge=0, description="fewest zeros padded to a template")
    padding_max: int = Field(60, ge=0, description="most zeros padded to a template")
    scale_coeff: float = Field(0.4, ge=0, description="random scaling amplitude")
    max_translation: int = Field(48, ge=1, description="circular shifts drawn from 0..this-1")
    corr_noise_scale: float = Field(0.25, ge=0, description="correlated (smoothed) noise")
    iid_noise_scale: float = Field(0.02, ge=0, description="independent noise per value")
    shear_scale: float = Field(0.75, ge=0, description="random linear shear amplitude")
    shuffle_seq: bool = Field(False, description="one fixed permutation of the 40 positions")
    final_seq_length: int = Field(40, ge=2, description="length of each sequence")

    @model_validator(mode="after")
    def _check_padding(self) -> Mnist1dOptions:
        if self.padding_max < self.padding_min:
            raise ValueError("padding_max must be at least padding_min")
        return self


@register_source(
    "mnist1d", "MNIST-1D sequences of 40 values, 10 classes, 4,000/1,000 (mnist1d package)",
    options=Mnist1dOptions,
)
def make_mnist1d(spec: DataSpec, options: Mnist1dOptions, data_dir: Path | None) -> RawSplits:
    from mnist1d.data import get_dataset_args, make_dataset  # heavy import (matplotlib)
    from mnist1d.utils import ObjectView

    args = get_dataset_args(as_dict=True)
    args.update(options.model_dump(exclude={"padding_min", "padding_max"}))
    args.update(padding=[options.padding_min, options.padding_max], seed=seed32(spec.seed))
    args.pop("url")  # make_dataset never downloads; drop the address so nothing can
    # make_dataset seeds Python's and numpy's global generators; leave them as they were.
    numpy_state, python_state = np.random.get_state(), random.getstate()
    try:
        with np.errstate(all="ignore"):  # overflow from huge scales is refused below
            data = make_dataset(ObjectView(args))
            x_train, x_test = data["x"].astype(np.float32), data["x_test"].astype(np.float32)
    finally:
        np.random.set_state(numpy_state)
        random.setstate(python_state)
    if not (np.isfinite(x_train).all() and np.isfinite(x_test).all()):
        raise GengapError("mnist1d: these options make inputs that are not finite in float32 "
                          "(NaN or infinite: a scale too large)")
    return RawSplits(x_train, data["y"].astype(np.int64), x_test,
                     data["y_test"].astype(np.int64), num_classes=10)
