"""Any user's arrays from a NumPy ``.npz`` file: ``x`` and ``y``, optionally ``x_test`` and
``y_test`` (else a stratified split by ``test_fraction``). Read with ``allow_pickle=False``:
object arrays are refused, never unpickled."""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np
from pydantic import Field

from gengap.data.checks import class_labels, finite_inputs
from gengap.data.randomize import subsample
from gengap.data.sources import RawSplits, SourceOptions, register_source
from gengap.errors import GengapError
from gengap.specs import DataSpec

MAX_CLASSES = 100_000  # ImageNet-21k has 21,841; a larger label is an id, not a class


class NpzOptions(SourceOptions):
    file: str = Field(
        description="the .npz file: absolute, or relative to the data folder (or to the "
        "current folder when none is given)"
    )
    tokens: bool = Field(
        False, description="x holds integer token ids (kept as int64, vocab_size = max + 1) "
        "instead of real values (float32)"
    )


def npz_path(options: NpzOptions, data_dir: Path | None) -> Path:
    path = Path(options.file)
    if path.is_absolute():
        return path
    return (Path(data_dir) if data_dir is not None else Path.cwd()) / path


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of an .npz file, without unpickling anything."""
    if path.is_dir():
        raise GengapError(f"{path}: a folder, not an .npz file")
    if not path.is_file():
        raise GengapError(f"npz: expected file {path}: not found")
    if not zipfile.is_zipfile(path):  # np.load would otherwise try to unpickle it
        raise GengapError(f"{path}: not a readable .npz file (not a zip archive)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except ValueError as err:  # object arrays need pickle, which is refused
        raise GengapError(f"{path}: unreadable array ({err})") from None
    except (OSError, zipfile.BadZipFile, EOFError, zlib.error) as err:
        raise GengapError(f"{path}: not a readable .npz file ({err})") from None
    for name, value in arrays.items():
        if not isinstance(value, np.ndarray):  # numpy hands back a member that is not .npy raw
            raise GengapError(f"{path}: member {name!r} is not a .npy array")
    return arrays


def _labels(path: Path, name: str, y: np.ndarray, n: int) -> np.ndarray:
    if y.shape != (n,):
        raise GengapError(f"{path}: {name} must have shape ({n},) like its inputs, got {y.shape}")
    if y.dtype.kind == "f":  # whole numbers stored as floats are labels, as in .mat files
        y = class_labels(f"{path}: {name}", y, 0, MAX_CLASSES - 1)
    if not np.issubdtype(y.dtype, np.integer) or (y.size and y.min() < 0):
        raise GengapError(f"{path}: {name} must hold integer class labels 0..C-1")
    return y.astype(np.int64)


def _inputs(path: Path, name: str, x: np.ndarray, tokens: bool) -> np.ndarray:
    if x.ndim < 2:
        raise GengapError(f"{path}: {name} must have shape (N, ...), got {x.shape}")
    if tokens:
        if not np.issubdtype(x.dtype, np.integer) or (x.size and x.min() < 0):
            raise GengapError(f"{path}: {name} must hold non-negative integer tokens")
        return x.astype(np.int64)
    if not (np.issubdtype(x.dtype, np.number) and not np.iscomplexobj(x)):
        raise GengapError(f"{path}: {name} must be a real-valued array, got {x.dtype}")
    return finite_inputs(path, x, name).astype(np.float32, copy=False)


@register_source(
    "npz", "your arrays from an .npz file: x, y and optionally x_test, y_test",
    options=NpzOptions, needs_files=True,
)
def make_npz(spec: DataSpec, options: NpzOptions, data_dir: Path | None) -> RawSplits:
    path = npz_path(options, data_dir)
    arrays = read_npz(path)
    missing = [k for k in ("x", "y") if k not in arrays]
    if missing:
        raise GengapError(
            f"{path}: missing array {missing[0]!r} (has: {', '.join(sorted(arrays)) or 'none'})"
        )
    if ("x_test" in arrays) != ("y_test" in arrays):
        raise GengapError(f"{path}: give both x_test and y_test, or neither")
    x = _inputs(path, "x", arrays["x"], options.tokens)
    y = _labels(path, "y", arrays["y"], len(x))
    if "x_test" in arrays:
        x_test = _inputs(path, "x_test", arrays["x_test"], options.tokens)
        y_test = _labels(path, "y_test", arrays["y_test"], len(x_test))
        if x_test.shape[1:] != x.shape[1:]:
            raise GengapError(
                f"{path}: x_test inputs have shape {x_test.shape[1:]}, x has {x.shape[1:]}"
            )
        x_train, y_train = x, y
    else:
        if len(y) < 2:
            raise GengapError(f"{path}: needs at least 2 examples to split off a test set")
        order = np.arange(len(y))
        kept, _ = subsample(order, y, 1.0 - spec.test_fraction, spec.seed, "npz")
        test = np.setdiff1d(order, kept)
        x_train, y_train, x_test, y_test = x[kept], y[kept], x[test], y[test]
    num_classes = int(max(y.max(initial=0), y_test.max(initial=0))) + 1
    if num_classes > MAX_CLASSES:
        raise GengapError(f"{path}: label {num_classes - 1} is not a class index 0..C-1 with "
                          f"C ≤ {MAX_CLASSES:,}")
    vocab = None
    if options.tokens:
        vocab = int(max(x.max(initial=0), x_test.max(initial=0))) + 1
    return RawSplits(x_train, y_train, x_test, y_test, num_classes=num_classes, vocab_size=vocab)
