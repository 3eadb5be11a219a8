"""A new zoo's data and networks, tried once before its folder is made: a class that is not in
the data, a missing data folder, flips or crops of non-image inputs or a transformer whose
heads do not divide its width would otherwise stop the zoo at its first run, leaving a folder
of pending runs behind."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch

from gengap.errors import GengapError
from gengap.models import build_for
from gengap.specs import RunSpec
from gengap.train.batches import check_augmentable
from gengap.zoo.worker import cached_splits

# bytes per parameter while training: weights, gradient, optimizer state and the initial copy
TRAINING_BYTES_PER_PARAMETER = 16


def check_data_and_networks(runs: Sequence[RunSpec], data_dir: str | Path | None) -> None:
    """Load each distinct data spec of ``runs`` once (through the training's cache, which
    training in this process then reuses) and build each distinct architecture on it (on
    torch's meta device: shapes only, no memory for weights); the first problem raises as it
    would in training (a one-line :class:`gengap.errors.GengapError`)."""
    by_data: dict[str, list[RunSpec]] = {}
    for run in runs:
        by_data.setdefault(run.data.canonical_json(), []).append(run)
    for group in by_data.values():
        splits = cached_splits(group[0].data.canonical_json(),
                               str(data_dir) if data_dir else None)
        for train in {run.train.canonical_json(): run.train for run in group}.values():
            check_augmentable(train, splits.x_train)
        archs = {run.arch.canonical_json(): run.arch for run in group}
        for arch in archs.values():
            try:
                with torch.device("meta"):
                    model = build_for(arch, splits)
            except RuntimeError as err:  # sizes beyond what a tensor can hold
                raise GengapError(f"[arch] {arch.family} of width {arch.width}, depth "
                                  f"{arch.depth}: cannot be built ({err})") from None
            _check_fits(arch.family, sum(p.numel() for p in model.parameters()))


def _check_fits(family: str, parameters: int) -> None:
    """Refuse a network whose training state alone exceeds this machine's memory."""
    try:
        memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not a POSIX system: not checked
        return
    needed = TRAINING_BYTES_PER_PARAMETER * parameters
    if needed > memory:
        raise GengapError(f"[arch] a {family} of {parameters:,} parameters needs about "
                          f"{needed / 2**30:,.0f} GiB to train; this machine has "
                          f"{memory / 2**30:,.0f} GiB")
