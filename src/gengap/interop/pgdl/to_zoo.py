"""A PGDL task as a gengap zoo, so that ``gengap measure`` and ``gengap evaluate`` work on it.

The zoo's runs use the ``keras`` family and the ``pgdl`` data source (both read the task
folder, which must stay where it was). When the reference hyperparameters form a complete
grid (as the competition's scorer requires), each hyperparameter is an axis of the zoo,
``arch.options.<name>``, so evaluation computes tau and the granulated Psi over them; otherwise
the only axis is ``arch.options.model`` and the hyperparameters are plain columns. The trained
and initial weights are copied into the zoo; the reference ``train_acc`` and ``test_acc`` are
the runs' metrics, so the frame has the ``gap``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from gengap.errors import GengapError
from gengap.interop.pgdl.reference import same_value, scalar
from gengap.interop.pgdl.registered import RESERVED
from gengap.interop.pgdl.task import PgdlTask, load_task, outside_task_folders
from gengap.models.weight_check import weight_problem
from gengap.specs import ArchSpec, DataSpec, ZooSpec, first_problem
from gengap.zoo.store import Store


def hyperparameter_grid(task: PgdlTask) -> dict[str, list[Any]] | None:
    """Each hyperparameter's values (in ``possible_values`` order) when the task's models form
    a complete grid, one model per cell; else None."""
    records = task.records
    if not records:
        return None
    entries = [records[m] for m in task.model_ids]
    names = list(entries[0].hparams)
    if not names or any(list(e.hparams) != names for e in entries):
        return None
    if any(name in RESERVED or "." in name for name in names):
        return None
    grid: dict[str, list[Any]] = {}
    for name in names:
        values: list[Any] = []
        for value in [*entries[0].possible.get(name, []), *(e.hparams[name] for e in entries)]:
            if any(same_value(value, v) for v in values):
                continue
            if any(same_value(value, e.hparams[name]) for e in entries):
                values.append(scalar(value))
        grid[name] = values
    cells = {
        tuple(next(i for i, v in enumerate(grid[n]) if same_value(v, e.hparams[n]))
              for n in names)
        for e in entries
    }
    size = math.prod(len(values) for values in grid.values())
    return grid if len(cells) == len(entries) == size else None


def task_zoo(task: PgdlTask) -> ZooSpec:
    """The zoo spec of a task: the ``pgdl`` data and ``keras`` models, over its grid."""
    options: dict[str, Any] = {"task": str(task.root)}
    if task.configs_path is not None and task.configs_path.parent != task.root:
        options["configs"] = str(task.configs_path)
    grid = hyperparameter_grid(task)
    if grid is not None:
        axes = {f"arch.options.{name}": tuple(values) for name, values in grid.items()}
    else:
        axes = {"arch.options.model": tuple(task.model_ids)}
    try:
        return ZooSpec(
            name=task.name if task.name.startswith("pgdl") else f"pgdl-{task.name}",
            data=DataSpec(name="pgdl", options={"task": str(task.root)}, normalize=False),
            arch=ArchSpec(family="keras", options=options),
            axes=axes,
        )
    except ValidationError as err:
        raise GengapError(f"{task.root}: cannot describe the task as a zoo "
                          f"({first_problem(err)})") from None


def import_task(
    task: PgdlTask | str | Path, out: str | Path, on_model: Callable[[str], None] | None = None
) -> Store:
    """Write ``task`` (a :class:`PgdlTask` or its folder) into the zoo folder ``out`` (created,
    or completed when an earlier import was interrupted): every model's weights and reference
    metrics, each run ``done``. A one-line :class:`GengapError` where ``out`` is, or lies in,
    a PGDL task folder (this one's or another's): a folder there reads as one more model."""
    outside_task_folders(out)
    task = task if isinstance(task, PgdlTask) else load_task(task)
    zoo = task_zoo(task)
    grid = "model" not in zoo.arch.options and not any(
        a == "arch.options.model" for a in zoo.axes
    )
    models = []
    for run in zoo.runs():
        options = dict(run.arch.options)
        if grid:
            model_id = task.find_model({k: v for k, v in options.items() if k not in RESERVED})
        else:
            model_id = str(options["model"])
        models.append((run.run_id, model_id))
    # every model read once before the zoo is written: a bad one leaves the folder as it was
    for _, model_id in models:
        _weights(task, model_id)
    store = Store.create(out, zoo)
    done = {run.run_id for run in store.runs(status="done")}
    for run_id, model_id in models:
        if run_id not in done:
            _copy_model(task, model_id, store, run_id)
        if on_model:
            on_model(model_id)
    return store


def _weights(task: PgdlTask, model_id: str) -> tuple[dict, dict | None]:
    """A model's final and initial weights (None: no usable initial ones)."""
    final = task.state(model_id, "final")
    init = task.state(model_id, "init")
    if final is None:  # only "init" can be absent
        raise GengapError(f"{task.root / model_id}: missing weights.hdf5")
    return final, init


def _copy_model(task: PgdlTask, model_id: str, store: Store, run_id: str) -> None:
    final, init = _weights(task, model_id)
    problem = weight_problem(final)
    if problem:  # kept, as a diverged run is, and never measured
        store.record(run_id, "failed", {"pgdl_model": model_id}, [], reason=problem)
        return
    if init is not None and weight_problem(init):  # as a Small CNN Zoo import: no init then
        init = None
    if init is not None:
        store.save_weights(run_id, "init", init)
    store.save_weights(run_id, "final", final)
    metrics: dict[str, Any] = {"pgdl_model": model_id}
    if task.records is not None:
        record = task.records[model_id]
        metrics.update(record.metrics)
        metrics.update({f"hp.{name}": scalar(value) for name, value in record.hparams.items()})
    store.record(run_id, "done", metrics, history=[])
