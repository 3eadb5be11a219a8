"""Measuring every model of a PGDL task and writing the competition's ``<task>.predict``.

A ``.predict`` file is a JSON object ``{"model_<id>": value, ...}``. The competition gave each
task a budget of 5 minutes per model, counted from the start of the task; once it was spent,
every remaining model (and every later task) was written as ``"EXCEEDED"``, which the scorer
turns into a score of 0. ``time_per_model`` reproduces that rule.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from gengap.atomic_write import write_text_atomically
from gengap.errors import GengapError
from gengap.interop.pgdl.task import PgdlTask
from gengap.measures import NEEDS, Measure, MeasureContext, compute, measures
from gengap.measures.context_checks import weights_problem

EXCEEDED = "EXCEEDED"
# what a task folder gives a measure: no training records, no second seed
TASK_PROVIDES = frozenset({"weights", "init_weights", "train_data", "gradients", "input_shape"})


@dataclass(frozen=True)
class ModelPrediction:
    """One model's value (or ``EXCEEDED``) and the seconds it took; ``why``: the reason for a
    NaN, where one is known."""

    model_id: str
    value: float | str
    seconds: float
    why: str = ""


def write_predict(path: str | Path, values: Mapping[str, float | str]) -> Path:
    """Write ``values`` (model id -> float, or ``"EXCEEDED"``) as a ``.predict`` JSON file,
    atomically. A value that is not finite (a measure's NaN, an infinity) is written as JSON's
    ``NaN`` or ``Infinity``, as the competition's ingestion (``float(value)`` dumped by Python's
    json) wrote it; its scorer reads them, ranking a NaN as tied with every model. A value that
    is not a number is refused."""
    path = Path(path)
    out: dict[str, float | str] = {}
    for model_id, value in values.items():
        if value == EXCEEDED:
            out[model_id] = EXCEEDED
            continue
        try:
            out[model_id] = float(value)
        except (TypeError, ValueError):
            raise GengapError(f"{path}: the value of {model_id} is {value!r}, not a number") \
                from None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise GengapError(f"{path}: cannot make its folder ({err.strerror})") from None
    write_text_atomically(path, json.dumps(out, indent=2, sort_keys=True) + "\n")
    return path


def without_value(values: Mapping[str, float | str]) -> list[str]:
    """The models whose value is a float but not finite."""
    return [m for m, v in values.items() if v != EXCEEDED and not math.isfinite(float(v))]


def task_measure(measure: str) -> Measure:
    """The registered measure ``measure`` when a PGDL task can give it what it needs (trained
    and initial weights, training data) and it is one number; otherwise a one-line error
    naming it, before any work."""
    entry = measures.get(measure)  # an unknown name: its own one-line error
    if entry.vector:
        raise GengapError(f"measure {measure!r} gives several values; pick a scalar one")
    missing = sorted(entry.needs - TASK_PROVIDES)
    if missing:
        raise GengapError(f"measure {measure!r} needs {NEEDS[missing[0]]}, which a PGDL task "
                          "does not have; pick one that needs only weights, initial weights "
                          "and training data")
    return entry


def predict_task(
    task: PgdlTask,
    measure: str,
    device: str = "auto",
    time_per_model: float | None = None,
    started: float | None = None,
    on_model: Callable[[ModelPrediction], None] | None = None,
) -> dict[str, float | str]:
    """The value of registered measure ``measure`` on every model of ``task`` (trained
    weights, initial weights when shipped, the task's training data).

    ``time_per_model`` (seconds) sets the competition's budget, ``len(models) *
    time_per_model`` from ``started`` (default: now); models after it is spent are
    ``EXCEEDED``. ``on_model`` is called after each model.
    """
    entry = task_measure(measure)
    started = time.perf_counter() if started is None else started
    budget = None if not time_per_model else len(task.model_ids) * time_per_model
    x, y = task.train_data
    out: dict[str, float | str] = {}
    for model_id in task.model_ids:
        begin = time.perf_counter()
        if budget is not None and begin - started > budget:
            out[model_id] = EXCEEDED
            if on_model:
                on_model(ModelPrediction(model_id, EXCEEDED, 0.0))
            continue
        model, init = task.model(model_id), task.model(model_id, "init")
        init_problem = weights_problem(init) if init is not None else None
        diverged_init = init_problem is not None
        why = weights_problem(model) or ""
        if not why and diverged_init and "init_weights" in entry.needs:
            why = f"initial weights: {init_problem}"
        if why:
            value = math.nan  # a diverged network (or its start, where needed): the kit's NaN
        else:
            try:
                ctx = MeasureContext(model, init_model=None if diverged_init else init,
                                     x_train=x, y_train=y, device=device)
                value = compute(ctx, [entry.name])[entry.name]
                why = ctx.no_value.get(entry.name, "")
            except GengapError as err:  # "<measure>: this measure needs ...": say which model
                raise GengapError(f"{task.root / model_id}: {err}") from None
        out[model_id] = float(value)
        if on_model:
            on_model(ModelPrediction(model_id, float(value), time.perf_counter() - begin, why))
    return out
