"""MNIST and Fashion-MNIST from their IDX files (gzipped or not), 60,000/10,000 28x28 images,
as float32 (N, 1, 28, 28) in [0, 1]."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from gengap.data.checks import class_labels, finite_inputs, unit_images
from gengap.data.files import find_file, source_folder
from gengap.data.idx import read_idx
from gengap.data.sources import RawSplits, register_source
from gengap.errors import GengapError
from gengap.specs import DataSpec

FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def read_mnist_like(data_dir: Path | None, source: str) -> RawSplits:
    """The four IDX files of ``DIR/<source>/`` as float images in [0, 1] and labels."""
    folder = source_folder(data_dir, source, source)
    arrays = []
    for images_name, labels_name in FILES.values():
        images_path = find_file(folder, [images_name + ".gz", images_name], source)
        labels_path = find_file(folder, [labels_name + ".gz", labels_name], source)
        images, labels = read_idx(images_path), read_idx(labels_path)
        if images.ndim != 3:
            raise GengapError(f"{images_path}: expected images (N, H, W), got shape {images.shape}")
        if labels.shape != (len(images),):
            raise GengapError(
                f"{labels_path}: expected {len(images)} labels (one per image of "
                f"{images_path.name}), got shape {labels.shape}"
            )
        labels = class_labels(labels_path, labels, 0, 9)
        images = finite_inputs(images_path, images, "images")
        if arrays and images.shape[1:] != arrays[0].shape[2:]:  # the network takes one size
            raise GengapError(f"{images_path}: images of {images.shape[1]}x{images.shape[2]}, "
                              f"the training images are {arrays[0].shape[2]}x"
                              f"{arrays[0].shape[3]}")
        arrays += [unit_images(images_path, images)[:, None], labels]
    return RawSplits(*arrays, num_classes=10)


@register_source(
    "mnist", "MNIST 28x28 digits from DIR/mnist/*-idx?-ubyte[.gz] (60,000/10,000)",
    needs_files=True,
)
def make_mnist(spec: DataSpec, options: BaseModel, data_dir: Path | None) -> RawSplits:
    return read_mnist_like(data_dir, "mnist")


@register_source(
    "fashion-mnist",
    "Fashion-MNIST 28x28 clothing from DIR/fashion-mnist/*-idx?-ubyte[.gz] (60,000/10,000)",
    needs_files=True,
)
def make_fashion_mnist(spec: DataSpec, options: BaseModel, data_dir: Path | None) -> RawSplits:
    return read_mnist_like(data_dir, "fashion-mnist")
