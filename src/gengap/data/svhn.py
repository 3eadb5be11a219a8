"""SVHN cropped digits from ``train_32x32.mat`` and ``test_32x32.mat`` (optionally
``extra_32x32.mat``): X of shape (32, 32, 3, N) and y in 1..10, where 10 stands for the digit
0; as float32 (N, 3, 32, 32) in [0, 1] with labels 0..9."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io
from pydantic import Field

from gengap.data.checks import class_labels, finite_inputs, unit_images
from gengap.data.files import find_file, source_folder
from gengap.data.sources import RawSplits, SourceOptions, register_source
from gengap.errors import GengapError
from gengap.specs import DataSpec


class SvhnOptions(SourceOptions):
    extra: bool = Field(False, description="add extra_32x32.mat (531,131 images) to training")


def read_svhn_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 3, 32, 32) float32 in [0, 1] and labels 0..9 of one SVHN .mat file."""
    try:
        mat = scipy.io.loadmat(path)
    except Exception as err:  # scipy's parser fails in many ways on a foreign file
        raise GengapError(f"{path}: not a readable MATLAB .mat file ({err})") from None
    if "X" not in mat or "y" not in mat:
        raise GengapError(f"{path}: expected arrays 'X' and 'y', found {sorted(mat)}")
    x, y = np.asarray(mat["X"]), np.asarray(mat["y"]).reshape(-1)
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3) or x.shape[3] != len(y):
        raise GengapError(
            f"{path}: expected X of shape (32, 32, 3, N) with N = {len(y)} labels, got {x.shape}"
        )
    if not (np.issubdtype(y.dtype, np.number) and np.issubdtype(x.dtype, np.number)):
        raise GengapError(f"{path}: X and y must be numeric, got {x.dtype} and {y.dtype}")
    labels = class_labels(path, y, 1, 10, note="10 is the digit 0")
    # bytes scaled, floats in [0, 1] kept: another type was passed through unscaled
    images = unit_images(path, finite_inputs(path, x, "X"))
    return np.transpose(images, (3, 2, 0, 1)), labels % 10


@register_source(
    "svhn", "SVHN 32x32 house-number digits from DIR/svhn/{train,test}_32x32.mat",
    options=SvhnOptions, needs_files=True,
)
def make_svhn(spec: DataSpec, options: SvhnOptions, data_dir: Path | None) -> RawSplits:
    folder = source_folder(data_dir, "svhn", "svhn")
    names = ["train_32x32.mat", "test_32x32.mat"] + (["extra_32x32.mat"] if options.extra else [])
    read = {name: read_svhn_mat(find_file(folder, [name], "svhn")) for name in names}
    train = [read["train_32x32.mat"]] + ([read["extra_32x32.mat"]] if options.extra else [])
    x_test, y_test = read["test_32x32.mat"]
    return RawSplits(
        np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train]),
        x_test, y_test, num_classes=10,
    )
