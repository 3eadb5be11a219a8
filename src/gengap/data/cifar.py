"""CIFAR-10 and CIFAR-100 from their binary distributions (the ``-bin`` tarballs): records of
label byte(s) then 3,072 pixel bytes (1,024 red, 1,024 green, 1,024 blue, rows of 32), as
float32 (N, 3, 32, 32) in [0, 1]."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field

from gengap.data.files import find_file, read_bytes, source_folder
from gengap.data.sources import RawSplits, SourceOptions, register_source
from gengap.errors import GengapError
from gengap.specs import DataSpec

PIXELS = 3 * 32 * 32


def read_cifar_records(path: Path, label_bytes: int) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 3, 32, 32) uint8 and the label bytes (N, label_bytes) of one binary file."""
    data = read_bytes(path)
    record = label_bytes + PIXELS
    if not data or len(data) % record:
        raise GengapError(
            f"{path}: {len(data)} bytes is not a whole number of {record}-byte CIFAR records "
            "(truncated, or not a CIFAR binary file)"
        )
    rows = np.frombuffer(data, dtype=np.uint8).reshape(-1, record)
    return rows[:, label_bytes:].reshape(-1, 3, 32, 32), rows[:, :label_bytes]


def _labels(path: Path, labels: np.ndarray, num_classes: int) -> np.ndarray:
    if labels.size and labels.max() >= num_classes:
        raise GengapError(f"{path}: label {labels.max()} is not below {num_classes}")
    return labels.astype(np.int64)


@register_source(
    "cifar10",
    "CIFAR-10 32x32 colour images from DIR/cifar-10-batches-bin/ (50,000/10,000, 10 classes)",
    needs_files=True,
)
def make_cifar10(spec: DataSpec, options: BaseModel, data_dir: Path | None) -> RawSplits:
    folder = source_folder(data_dir, "cifar10", "cifar-10-batches-bin")
    parts = {}
    for split, names in (
        ("train", [f"data_batch_{i}.bin" for i in range(1, 6)]), ("test", ["test_batch.bin"])
    ):
        images, labels = [], []
        for name in names:
            path = find_file(folder, [name], "cifar10")
            x, y = read_cifar_records(path, 1)
            images.append(x)
            labels.append(_labels(path, y[:, 0], 10))
        parts[split] = (np.concatenate(images), np.concatenate(labels))
    return RawSplits(
        (parts["train"][0] / 255.0).astype(np.float32), parts["train"][1],
        (parts["test"][0] / 255.0).astype(np.float32), parts["test"][1], num_classes=10,
    )


class Cifar100Options(SourceOptions):
    labels: Literal["fine", "coarse"] = Field(
        "fine", description="the 100 fine classes or the 20 coarse superclasses"
    )


@register_source(
    "cifar100",
    "CIFAR-100 32x32 colour images from DIR/cifar-100-binary/ (50,000/10,000)",
    options=Cifar100Options,
    needs_files=True,
)
def make_cifar100(spec: DataSpec, options: Cifar100Options, data_dir: Path | None) -> RawSplits:
    folder = source_folder(data_dir, "cifar100", "cifar-100-binary")
    column, num_classes = (1, 100) if options.labels == "fine" else (0, 20)
    arrays = []
    for name in ("train.bin", "test.bin"):
        path = find_file(folder, [name], "cifar100")
        x, y = read_cifar_records(path, 2)  # coarse label byte, then fine
        arrays += [(x / 255.0).astype(np.float32), _labels(path, y[:, column], num_classes)]
    return RawSplits(*arrays, num_classes=num_classes)
