"""Shared processing after a source: class subset, subsampling, the randomization knobs,
normalization, tensors."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from pydantic import BaseModel, ValidationError

from gengap.data import randomize as rz
from gengap.data.sources import RawSplits, sources
from gengap.errors import GengapError
from gengap.specs import DataSpec, first_problem


def plain_strides(x: torch.Tensor) -> torch.Tensor:
    """``x`` in row-major memory order with the plain strides. A 1-channel image batch made by
    a permute (an (N, H, W, 1) file, a random crop) passes ``is_contiguous()`` with
    channels-last strides, which then spread through the network; see
    :func:`gengap.models.channels_last.channels_last_safe` for why that can crash a backward
    pass."""
    if x.is_contiguous() and x.stride() == torch.empty(x.shape, device="meta").stride():
        return x
    return x.clone(memory_format=torch.contiguous_format)


@dataclass(frozen=True)
class Splits:
    """Train and test tensors of one data set, labels int64 in 0..num_classes-1.

    Inputs are float32, images (N, C, H, W) or vectors (N, D), except for token sources
    (``pvr-vector``, ``modular``, ``npz`` with ``tokens``): int64 token ids (N, seq_len), each
    below ``vocab_size``. ``vocab_size`` is None for real-valued inputs; a model builder uses it
    to size its embedding. Inputs are stored with plain row-major strides (:func:`plain_strides`).
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    vocab_size: int | None = None

    def __post_init__(self) -> None:
        for name in ("x_train", "x_test"):
            object.__setattr__(self, name, plain_strides(getattr(self, name)))

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one input, without the batch dimension."""
        return tuple(self.x_train.shape[1:])

    @property
    def kind(self) -> str:
        """``tokens``, ``image`` (C, H, W) or ``vector``."""
        if self.vocab_size is not None:
            return "tokens"
        return "image" if len(self.input_shape) == 3 else "vector"


def data_dir(explicit: str | Path | None = None) -> Path | None:
    """Where local data files live: the argument, else ``$GENGAP_DATA``, else none."""
    chosen = explicit or os.environ.get("GENGAP_DATA")
    return Path(chosen) if chosen else None


def source_options(spec: DataSpec) -> BaseModel:
    """The validated options of ``spec``'s source (one-line error on a bad one)."""
    source = sources.get(spec.name)
    try:
        return source.options.model_validate(spec.options)
    except ValidationError as err:
        raise GengapError(f"data source {spec.name!r}: option {first_problem(err)}") from None


def load_raw(spec: DataSpec, directory: str | Path | None = None) -> RawSplits:
    """The source's own arrays for ``spec``, before any of the shared processing."""
    options = source_options(spec)
    return sources.get(spec.name).make(spec, options, data_dir(directory))


def load(spec: DataSpec, directory: str | Path | None = None) -> Splits:
    """Build the train/test tensors that ``spec`` describes; deterministic in ``spec.seed``.

    In order: the source's arrays; ``classes`` (both splits); ``train_fraction`` or
    ``train_size`` (a stratified subsample of the training split; the test split is never
    subsampled); ``grayscale``; the input corruptions (``shuffled_pixels`` on both splits,
    ``random_pixels`` and ``gaussian_inputs`` on the test split too unless
    ``corrupt_test_inputs`` is false); the label corruptions on the training split only
    (``label_noise`` or ``random_labels``, then ``dilution``); finally ``normalize`` with the
    training inputs' statistics, applied to both splits. Token inputs are never normalized.
    """
    raw = load_raw(spec, directory)
    name, tokens = spec.name, raw.vocab_size is not None
    x_train, y_train, x_test, y_test = raw.x_train, raw.y_train, raw.x_test, raw.y_test
    num_classes = raw.num_classes
    if spec.classes:
        x_train, y_train = rz.select_classes(x_train, y_train, spec.classes, num_classes, name)
        x_test, y_test = rz.select_classes(x_test, y_test, spec.classes, num_classes, name)
        num_classes = len(spec.classes)
    present = np.unique(y_train)
    if len(present) < 2:  # nothing to classify: training fits it at once, and measures fail
        source = f"{name} ({spec.options['file']})" if "file" in spec.options else name
        held = f"only class {present[0]}" if len(present) else "no examples"
        raise GengapError(f"{source}: the training split holds {held}; a classification task "
                          "needs at least two classes")
    if spec.train_size is not None:
        x_train, y_train = rz.subsample(x_train, y_train, spec.train_size, spec.seed, name)
    elif spec.train_fraction < 1.0:
        x_train, y_train = rz.subsample(x_train, y_train, spec.train_fraction, spec.seed, name)
    if spec.grayscale:
        x_train, x_test = rz.grayscale(x_train, name), rz.grayscale(x_test, name)
    x_train, x_test = _corrupt_inputs(spec, x_train, x_test, tokens)
    if spec.random_labels or spec.label_noise > 0:
        p = 1.0 if spec.random_labels else spec.label_noise
        y_train = rz.corrupt_labels(y_train, p, num_classes, rz.knob_rng(spec.seed, "labels"))
    if spec.dilution > 0:
        rng = rz.knob_rng(spec.seed, "dilution")
        x_train, y_train = rz.dilute(x_train, y_train, spec.dilution, num_classes, rng)
    if spec.normalize and not tokens:
        x_train, x_test = rz.standardize(x_train, x_test, spec.normalization, name)
    dtype = np.int64 if tokens else np.float32
    return Splits(
        x_train=torch.from_numpy(np.ascontiguousarray(x_train, dtype=dtype)),
        y_train=torch.from_numpy(np.ascontiguousarray(y_train, dtype=np.int64)),
        x_test=torch.from_numpy(np.ascontiguousarray(x_test, dtype=dtype)),
        y_test=torch.from_numpy(np.ascontiguousarray(y_test, dtype=np.int64)),
        num_classes=num_classes,
        vocab_size=raw.vocab_size,
    )


def _corrupt_inputs(
    spec: DataSpec, x_train: np.ndarray, x_test: np.ndarray, tokens: bool
) -> tuple[np.ndarray, np.ndarray]:
    if spec.shuffled_pixels:
        return rz.shuffle_pixels(x_train, x_test, rz.knob_rng(spec.seed, "shuffled_pixels"))
    if spec.random_pixels:
        rng = rz.knob_rng(spec.seed, "random_pixels")
        x_train = rz.random_pixels(x_train, rng)
        if spec.corrupt_test_inputs:
            x_test = rz.random_pixels(x_test, rng)
    if spec.gaussian_inputs:
        if tokens:
            raise GengapError(f"gaussian_inputs: {spec.name} inputs are tokens, not real values")
        rng = rz.knob_rng(spec.seed, "gaussian_inputs")
        noise_train = rz.gaussian_like(x_train, x_train, spec.gaussian_moments, rng)
        if spec.corrupt_test_inputs:
            x_test = rz.gaussian_like(x_train, x_test, spec.gaussian_moments, rng)
        x_train = noise_train
    return x_train, x_test
