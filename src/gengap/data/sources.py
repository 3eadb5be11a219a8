"""The registry of data sources. A source turns a :class:`DataSpec` (and its validated
options) into raw numpy arrays; :func:`gengap.data.load` does the shared processing."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict

from gengap.registry import Registry
from gengap.specs import DataSpec, first_type_problem


class SourceOptions(BaseModel):
    """The base of every source's options: an unknown key is an error (a typo is not silently
    a default), options are frozen (they are part of a hashed spec), NaN and infinities are
    refused."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class NoOptions(SourceOptions):
    """A source without knobs of its own."""


@dataclass(frozen=True)
class RawSplits:
    """A source's output: inputs shaped (N, *input_shape) and int labels 0..C-1.

    Inputs are float32 (images (N, C, H, W) in [0, 1], vectors (N, D)), or, for token
    sources, int64 token ids (N, seq_len) below ``vocab_size``.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    vocab_size: int | None = None


Maker = Callable[[DataSpec, BaseModel, Path | None], RawSplits]


@dataclass(frozen=True)
class Source:
    name: str
    make: Maker
    options: type[BaseModel]
    description: str
    needs_files: bool = False


sources: Registry[Source] = Registry("data source")


def register_source(
    name: str, description: str, options: type[BaseModel] = NoOptions, needs_files: bool = False
) -> Callable[[Maker], Maker]:
    """Register ``make(spec, options, data_dir) -> RawSplits`` under ``name``; ``options`` is
    the source's :class:`SourceOptions` subclass (its knobs, validated from the spec)."""

    def decorate(make: Maker) -> Maker:
        sources.add(name, Source(name, make, options, description, needs_files))
        return make

    return decorate


def option_type_problem(name: str, options: Mapping[str, object],
                        ranged: Collection[str] = ()) -> str | None:
    """``key: why`` for the first of ``options`` whose value the options of source ``name``
    would convert rather than take (the text '500' for a number of examples: a spec file's
    values keep their types, :func:`gengap.specs.type_problem`), or that a range draws
    (``ranged``: those keys) where the option takes no numbers; None where all fit, or where
    ``name`` is no source (its own error comes elsewhere)."""
    if name not in sources:
        return None
    return first_type_problem(sources.get(name).options.model_fields, options, ranged)
