"""The randomization knobs of Zhang et al. 2017 and Rolnick et al. 2017, on numpy arrays.

Each knob draws from its own random stream (:func:`knob_rng`), derived from the data seed and
the knob's name, so that switching one knob on does not move another's draws. Label noise uses
one uniform draw per example and compares it with ``p``: at a fixed seed the examples
corrupted at p = 0.2 are a subset of those corrupted at p = 0.4.
"""

from __future__ import annotations

import math
import zlib

import numpy as np
from sklearn.model_selection import train_test_split

from gengap.errors import GengapError

# ITU-R BT.601 luma weights, the usual RGB -> gray conversion (PIL's "L" mode uses them too).
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def knob_rng(seed: int, knob: str) -> np.random.Generator:
    """The random stream of one knob at one data seed."""
    return np.random.default_rng([seed % 2**64, zlib.crc32(knob.encode())])


def select_classes(
    x: np.ndarray, y: np.ndarray, classes: tuple[int, ...], num_classes: int, source: str
) -> tuple[np.ndarray, np.ndarray]:
    """Keep the examples of ``classes`` and relabel them 0..k-1 in the order given."""
    unknown = [c for c in classes if c >= num_classes]
    if unknown:
        raise GengapError(
            f"classes: {source} has classes 0..{num_classes - 1}, not {unknown[0]}"
        )
    lookup = np.full(num_classes, -1, dtype=np.int64)
    lookup[list(classes)] = np.arange(len(classes))
    keep = lookup[y] >= 0
    return x[keep], lookup[y[keep]]


def seed32(seed: int) -> int:
    """``seed`` as the 32-bit seed numpy's legacy generator and scikit-learn take (any int is a
    valid gengap seed; those already in range are unchanged)."""
    return seed % 2**32


def stratified_split(x: np.ndarray, y: np.ndarray, test_fraction: float, seed: int,
                     source: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, x_test, y_train, y_test): a stratified split with ``test_fraction`` of the
    examples held out (rounded up, as scikit-learn does). A fraction that leaves either
    split fewer examples than classes, where no split can hold every class, is a one-line
    error naming ``source``."""
    classes = len(np.unique(y))
    n_test = math.ceil(test_fraction * len(y))
    n_train = len(y) - n_test
    if min(n_train, n_test) < classes:
        raise GengapError(f"{source}: test_fraction = {test_fraction:g} leaves {n_train} "
                          f"training and {n_test} test examples of {len(y)}, fewer than the "
                          f"{classes} classes a stratified split needs on each side")
    return train_test_split(x, y, test_size=test_fraction, stratify=y,
                            random_state=seed32(seed))


def subsample(
    x: np.ndarray, y: np.ndarray, size: int | float, seed: int, source: str
) -> tuple[np.ndarray, np.ndarray]:
    """A stratified subsample of ``size`` examples (an int) or share (a float < 1, rounded
    down as scikit-learn does). Where scikit-learn cannot stratify (a class with one member),
    each class gets its share by largest remainders instead."""
    if isinstance(size, int):
        if size > len(y):
            raise GengapError(
                f"train_size = {size}: {source} has only {len(y)} training examples"
            )
        if size == len(y):
            return x, y
    keep = size if isinstance(size, int) else math.floor(size * len(y))
    if keep < 1:
        raise GengapError(f"{source}: a share of {size} of {len(y)} training examples keeps none")
    try:
        x, _, y, _ = train_test_split(x, y, train_size=size, stratify=y,
                                      random_state=seed32(seed))
    except ValueError:  # a class with fewer members than scikit-learn's split needs
        picked = _stratified_by_hand(y, keep, seed)
        x, y = x[picked], y[picked]
    return x, y


def _stratified_by_hand(y: np.ndarray, keep: int, seed: int) -> np.ndarray:
    """Indices of ``keep`` examples, each class's count its share of ``keep`` rounded by
    largest remainders, the members drawn at random, in random order."""
    rng = np.random.default_rng(seed32(seed))
    classes, counts = np.unique(y, return_counts=True)
    quota = counts * keep / len(y)
    take = np.floor(quota).astype(int)
    extra = np.argsort(-(quota - take), kind="stable")[: keep - take.sum()]
    take[extra] += 1
    picked = [rng.choice(np.flatnonzero(y == c), n, replace=False)
              for c, n in zip(classes, take, strict=True) if n]
    return rng.permutation(np.concatenate(picked))


def corrupt_labels(
    y: np.ndarray, p: float, num_classes: int, rng: np.random.Generator
) -> np.ndarray:
    """Zhang et al.'s partially corrupted labels: with probability ``p``, independently per
    example, the label becomes a uniform random class (which may be the true one, so the
    expected share of changed labels is p·(1 − 1/K))."""
    u = rng.random(len(y))
    drawn = rng.integers(num_classes, size=len(y))
    return np.where(u < p, drawn, y).astype(np.int64)


def dilute(
    x: np.ndarray, y: np.ndarray, alpha: float, num_classes: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Rolnick et al.'s massive label noise: add round(alpha·n) examples whose inputs are
    training inputs drawn with replacement and whose labels are uniform random classes."""
    extra = round(alpha * len(y))
    idx = rng.integers(len(y), size=extra)
    labels = rng.integers(num_classes, size=extra)
    return np.concatenate([x, x[idx]]), np.concatenate([y, labels]).astype(np.int64)


def _positions(x: np.ndarray) -> np.ndarray:
    """(N, channels, positions): images keep their channels together, so a permutation
    moves whole pixels; vectors and token sequences have one channel."""
    if x.ndim == 4:
        return x.reshape(len(x), x.shape[1], -1)
    return x.reshape(len(x), 1, -1)


def shuffle_pixels(
    x_train: np.ndarray, x_test: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """One random permutation of the pixel positions, the same for every image of both
    splits (Zhang et al.'s shuffled pixels)."""
    perm = rng.permutation(_positions(x_train).shape[2])
    return (
        _positions(x_train)[:, :, perm].reshape(x_train.shape),
        _positions(x_test)[:, :, perm].reshape(x_test.shape),
    )


def random_pixels(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """An independent random permutation of the pixel positions for every image."""
    flat = _positions(x)
    perms = rng.random((flat.shape[0], flat.shape[2])).argsort(axis=1)
    return np.take_along_axis(flat, perms[:, None, :], axis=2).reshape(x.shape)


def gaussian_like(
    x_train: np.ndarray, x: np.ndarray, moments: str, rng: np.random.Generator
) -> np.ndarray:
    """Gaussian noise shaped like ``x`` with the mean and variance of the training inputs:
    one pair for all coordinates (``global``) or one per coordinate (``per_feature``)."""
    if moments == "global":
        mean, std = x_train.mean(dtype=np.float64), x_train.std(dtype=np.float64)
    else:
        mean, std = x_train.mean(axis=0, dtype=np.float64), x_train.std(axis=0, dtype=np.float64)
    return (mean + std * rng.standard_normal(x.shape)).astype(np.float32)


def grayscale(x: np.ndarray, source: str) -> np.ndarray:
    """RGB images (N, 3, H, W) to luminance (N, 1, H, W); one-channel images stay as they are."""
    if x.ndim != 4:
        raise GengapError(f"grayscale: {source} inputs are not images (shape {x.shape[1:]})")
    if x.shape[1] == 1:
        return x
    if x.shape[1] != 3:
        raise GengapError(f"grayscale: {source} images have {x.shape[1]} channels, not 3")
    return np.tensordot(x, LUMA, axes=([1], [0]))[:, None].astype(np.float32)


def standardize(
    x_train: np.ndarray, x_test: np.ndarray, mode: str, source: str
) -> tuple[np.ndarray, np.ndarray]:
    """Subtract the training inputs' mean and divide by their standard deviation (one pair,
    one per image channel, or one per coordinate); a zero deviation counts as 1."""
    if mode == "global":
        axes: tuple[int, ...] = tuple(range(x_train.ndim))
    elif mode == "per_channel":
        if x_train.ndim != 4:
            raise GengapError(
                f"normalization = per_channel: {source} inputs are not images "
                f"(shape {x_train.shape[1:]})"
            )
        axes = (0, 2, 3)
    else:
        axes = (0,)
    mean = x_train.mean(axis=axes, keepdims=True, dtype=np.float64)
    std = x_train.std(axis=axes, keepdims=True, dtype=np.float64)
    std = np.where(std > 0, std, 1.0)
    return (
        ((x_train - mean) / std).astype(np.float32),
        ((x_test - mean) / std).astype(np.float32),
    )
