"""Measuring the finished runs of a zoo and storing the values."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from gengap.data import Splits, load
from gengap.errors import GengapError
from gengap.measures import MeasureContext, compute_timed, select
from gengap.models import build
from gengap.specs import RunSpec
from gengap.zoo.store import Store


def load_model(store: Store, run: RunSpec, splits: Splits, which: str = "final") -> nn.Module:
    """Rebuild a run's network and load its ``init`` or ``final`` weights from the store."""
    model = build(run.arch, splits.input_shape, splits.num_classes)
    state = store.load_weights(run.run_id, which)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        path = store.weights_path(run.run_id, which)
        problem = str(err).splitlines()[0]
        raise GengapError(f"{path}: weights do not fit the run's network ({problem})") from None
    if any(not torch.isfinite(t).all() for t in state.values() if t.is_floating_point()):
        raise GengapError(f"{store.weights_path(run.run_id, which)}: weights hold NaN or inf")
    return model


def measure_zoo(
    store: Store,
    names: str | list[str] | None = None,
    device: str = "auto",
    data_dir: str | Path | None = None,
    recompute: bool = False,
    on_run: Callable[[str, dict[str, tuple[float, float]]], None] | None = None,
) -> int:
    """Compute the chosen measures on every ``done`` run that lacks them; return how many runs
    were measured. Values go into the store as they are computed (an interrupted call keeps
    what it finished)."""
    wanted = [m.name for m in select(names)]
    have = store.measured()
    splits_by_data: dict[str, Splits] = {}
    measured = 0
    for run in store.runs(status="done"):
        missing = wanted if recompute else [n for n in wanted if n not in have.get(run.run_id, ())]
        if not missing:
            continue
        key = run.data.canonical_json()
        if key not in splits_by_data:
            splits_by_data = {key: load(run.data, data_dir)}  # zoos are grouped by data
        splits = splits_by_data[key]
        ctx = MeasureContext(
            load_model(store, run, splits, "final"),
            init_model=load_model(store, run, splits, "init"),
            x_train=splits.x_train,
            y_train=splits.y_train,
            device=device,
        )
        values = compute_timed(ctx, missing)
        store.put_measures(run.run_id, values)
        measured += 1
        if on_run:
            on_run(run.run_id, values)
    return measured
