"""Visual pointer value retrieval (Zhang, Raghu, Kleinberg & Bengio 2021), block style: four
digit images in a 2x2 grid. The top-left digit is the pointer: 0-3 point to the top-right
cell, 4-6 to the bottom-left, 7-9 to the bottom-right; the label is the digit in the pointed
cell. Digit images come from scikit-learn's digits (8x8, grids of 16x16) or, when the user has
it, MNIST (28x28, grids of 56x56). The pools of digit images are split first, so that no test
grid reuses a training image.

Holdout (distribution shift): in training the top-right cell never shows 1, 2, 3, the
bottom-left never 4, 5, 6 and the bottom-right never 7, 8, 9, 0; the shifted test set shows
only those digits in those cells. The pointer cell is unrestricted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field
from sklearn.datasets import load_digits

from gengap.data.files import source_folder
from gengap.data.mnist import read_mnist_like
from gengap.data.randomize import knob_rng, stratified_split
from gengap.data.sources import RawSplits, SourceOptions, register_source
from gengap.errors import GengapError
from gengap.specs import DataSpec

# Cells in reading order: 0 top-left (pointer), 1 top-right, 2 bottom-left, 3 bottom-right.
POINTED_CELL = np.array([1, 1, 1, 1, 2, 2, 2, 3, 3, 3])
HELD_OUT = {1: (1, 2, 3), 2: (4, 5, 6), 3: (7, 8, 9, 0)}

Mode = Literal["iid", "holdout", "shifted"]


class PvrVisualOptions(SourceOptions):
    digits_from: Literal["digits", "mnist"] = Field(
        "digits", description="digit images: scikit-learn's 8x8 digits, or MNIST (local files)"
    )
    holdout: bool = Field(False, description="training grids never show the held-out digits")
    shifted_test: bool = Field(
        True, description="with holdout, the test split shows only the held-out digits"
    )
    n_train: int = Field(10000, ge=1, description="training grids")
    n_test: int = Field(2000, ge=1, description="test grids")


def allowed_digits(cell: int, mode: Mode) -> np.ndarray:
    """The digits that ``cell`` may show in ``mode`` (iid, holdout training, shifted test)."""
    if cell == 0 or mode == "iid":
        return np.arange(10)
    held = np.array(HELD_OUT[cell])
    return held if mode == "shifted" else np.setdiff1d(np.arange(10), held)


def draw_cells(n: int, mode: Mode, rng: np.random.Generator) -> np.ndarray:
    """The digit class of each of the four cells, (n, 4), uniform among the allowed ones."""
    return np.stack(
        [rng.choice(allowed_digits(cell, mode), size=n) for cell in range(4)], axis=1
    )


def pvr_labels(cells: np.ndarray) -> np.ndarray:
    """The digit in the cell that the top-left digit points to."""
    return cells[np.arange(len(cells)), POINTED_CELL[cells[:, 0]]]


def compose_grids(
    cells: np.ndarray, images: np.ndarray, labels: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Grids (n, 1, 2h, 2w) whose cells are images of the classes in ``cells``, each image
    drawn uniformly from the pool (``images`` (M, h, w) with ``labels``)."""
    h, w = images.shape[1:]
    chosen = np.empty(cells.shape, dtype=np.int64)
    for digit in range(10):
        pool = np.flatnonzero(labels == digit)
        mask = cells == digit
        chosen[mask] = pool[rng.integers(len(pool), size=int(mask.sum()))]
    tiles = images[chosen]  # (n, 4, h, w)
    grid = tiles.reshape(len(cells), 2, 2, h, w).transpose(0, 1, 3, 2, 4)
    return grid.reshape(len(cells), 1, 2 * h, 2 * w).astype(np.float32)


def _digit_pools(
    spec: DataSpec, options: PvrVisualOptions, data_dir: Path | None
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    if options.digits_from == "mnist":
        raw = read_mnist_like(data_dir, "mnist")
        for split, labels in (("train", raw.y_train), ("test", raw.y_test)):
            absent = sorted(set(range(10)) - set(np.unique(labels).tolist()))
            if absent:  # every cell may need any digit: the pointer cell always does
                folder = source_folder(data_dir, "mnist", "mnist")
                raise GengapError(f"{folder}: the {split} split has no image of digit "
                                  f"{', '.join(map(str, absent))}, and pvr-visual's grids "
                                  "draw every digit")
        return (raw.x_train[:, 0], raw.y_train), (raw.x_test[:, 0], raw.y_test)
    bunch = load_digits()
    x = (bunch.images / 16.0).astype(np.float32)
    x_train, x_test, y_train, y_test = stratified_split(x, bunch.target, spec.test_fraction,
                                                        spec.seed, "pvr-visual's digits")
    return (x_train, y_train), (x_test, y_test)


@register_source(
    "pvr-visual", "pointer value retrieval on 2x2 grids of digit images, with holdout shift",
    options=PvrVisualOptions,
)
def make_pvr_visual(spec: DataSpec, options: PvrVisualOptions, data_dir: Path | None) -> RawSplits:
    train_pool, test_pool = _digit_pools(spec, options, data_dir)
    out = []
    for pool, n, mode, stream in (
        (train_pool, options.n_train, "holdout" if options.holdout else "iid", "train"),
        (test_pool, options.n_test,
         "shifted" if options.holdout and options.shifted_test
         else ("holdout" if options.holdout else "iid"), "test"),
    ):
        rng = knob_rng(spec.seed, f"pvr-visual/{stream}")
        cells = draw_cells(n, mode, rng)
        out += [compose_grids(cells, *pool, rng), pvr_labels(cells).astype(np.int64)]
    return RawSplits(*out, num_classes=10)
