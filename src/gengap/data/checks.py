"""Checks of the values that a local data file holds, shared by the loaders: one vectorized
pass each, and a one-line error that names the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gengap.errors import GengapError


def finite_inputs(path: Path, x: np.ndarray, name: str) -> np.ndarray:
    """``x`` as float32 (what the network computes in; the cast checked, not made twice) when
    every value is finite there; NaN, an infinity or a value past float32's range would only
    surface as a "diverged" run, so it is refused here, naming the first at fault. Integer
    arrays are returned unchanged without a look."""
    if x.dtype.kind != "f":
        return x
    with np.errstate(over="ignore"):  # overflow to inf is what this looks for
        as32 = x.astype(np.float32, copy=False)
    finite = np.isfinite(as32)
    if finite.all():
        return as32
    where = np.unravel_index(int(np.argmin(finite)), x.shape)
    value = float(x[where])
    shown = "NaN" if np.isnan(value) else f"{value:g}"
    past = ", past float32's range" if np.isfinite(value) else ""
    raise GengapError(f"{path}: {name}[{', '.join(str(int(i)) for i in where)}] is "
                      f"{shown}{past}; inputs must be finite numbers")


def class_labels(path: Path | str, y: np.ndarray, low: int, high: int, note: str = ""
                 ) -> np.ndarray:
    """``y`` as int64 class labels when every value is a whole number in ``low..high``
    (``path``: what the messages name, a file or a file's array);
    otherwise a one-line error (a cast would truncate 1.5 to 1, and NaN to any integer).
    ``note`` is added to the range's message ("10 is the digit 0", say)."""
    if y.dtype.kind not in "iuf":
        raise GengapError(f"{path}: labels must be real numbers, got {y.dtype}")
    if y.dtype.kind == "f":
        whole = np.isfinite(y) & (np.floor(y) == y)
        if not whole.all():
            bad = y.reshape(-1)[int(np.argmin(whole.reshape(-1)))]
            raise GengapError(f"{path}: labels must be whole numbers {low}..{high}, found "
                              f"{bad:g}")
    if y.size and (y.min() < low or y.max() > high):
        suffix = f" ({note})" if note else ""
        raise GengapError(f"{path}: labels must be {low}..{high}{suffix}")
    return y.astype(np.int64)


def unit_images(path: Path, images: np.ndarray) -> np.ndarray:
    """Images as float32 in [0, 1]: bytes (0..255, as MNIST's and SVHN's) divided by 255,
    floats taken as they are when within [0, 1]; a one-line error otherwise (a signed or wider
    integer type has no scale to read it by, and floats beyond [0, 1] are not such images)."""
    if images.dtype == np.uint8:
        return (images / 255.0).astype(np.float32)
    if not np.issubdtype(images.dtype, np.floating):
        raise GengapError(f"{path}: images of type {images.dtype}: expected unsigned bytes "
                          "(0..255) or floats in [0, 1]")
    if images.size and (images.min() < 0 or images.max() > 1):
        raise GengapError(f"{path}: float images from {images.min():g} to {images.max():g}: "
                          "expected values in [0, 1]")
    return images.astype(np.float32)
