"""scikit-learn's 8x8 handwritten digits: 1,797 images, 10 classes, shipped with scikit-learn."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import BaseModel
from sklearn.datasets import load_digits

from gengap.data.randomize import stratified_split
from gengap.data.sources import RawSplits, register_source
from gengap.specs import DataSpec


@register_source("digits", "scikit-learn's 8x8 digits (1,797 images, 10 classes), stratified split")
def make_digits(spec: DataSpec, options: BaseModel, data_dir: Path | None) -> RawSplits:
    bunch = load_digits()
    x = (bunch.data / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    y = bunch.target.astype(np.int64)
    x_train, x_test, y_train, y_test = stratified_split(x, y, spec.test_fraction, spec.seed,
                                                        "digits")
    return RawSplits(x_train, y_train, x_test, y_test, num_classes=10)
