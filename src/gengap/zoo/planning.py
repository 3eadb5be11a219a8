"""Turning a zoo's pending runs into tasks: runs that can share a population (same shape,
batch size and data order) train as one where a measurement says that is faster here."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch

from gengap.errors import GengapError
from gengap.specs import RunSpec
from gengap.train import group_runs, population_key, population_speedup
from gengap.zoo.worker import Task, cached_splits

PopulationMode = Literal["auto", "on", "off"]
MAX_POPULATION = 64  # networks per population task
MIN_SPEEDUP = 1.2  # below this a population is not worth losing per-run progress


def check_population_mode(mode: str) -> None:
    """A one-line :class:`GengapError` unless ``mode`` is a population mode (auto, on, off)."""
    if mode not in ("auto", "on", "off"):
        raise GengapError(f"unknown population mode {mode!r} (use auto, on or off)")


def plan_tasks(
    runs: list[RunSpec],
    population: PopulationMode = "auto",
    workers: int = 1,
    device: str = "auto",
    data_dir: str | None = None,
    on_probe: Callable[[list[RunSpec], float], None] | None = None,
    measure: Callable[[list[RunSpec]], float] | None = None,
) -> list[Task]:
    """Tasks for ``runs``. ``auto`` probes each group of population candidates (a few steps
    alone and together, on the real shapes, by :func:`gengap.train.population_speedup` or
    ``measure``) and batches it only where :func:`worth_batching` says so; ``on`` batches every
    group; ``off`` trains every run alone. Groups that differ only in seed (data order) have
    the same cost, so one probe serves them all."""
    check_population_mode(population)
    if measure is None:
        def measure(group: list[RunSpec]) -> float:
            return _probe(group, workers, device, data_dir)
    tasks: list[Task] = []
    decided: dict[tuple[str | None, int], float] = {}
    for group in group_runs(runs) if population != "off" else [[r] for r in runs]:
        if len(group) > 1 and population == "auto":
            size = min(len(group), MAX_POPULATION)
            shape = (population_key(group[0].model_copy(update={"seed": 0})), size)
            if shape not in decided:
                decided[shape] = measure(group[:size])
                if on_probe:
                    on_probe(group[:size], decided[shape])
            batched = worth_batching(decided[shape])
        else:
            batched = len(group) > 1
        if batched:
            tasks += [
                Task.of(group[i : i + MAX_POPULATION], True)
                for i in range(0, len(group), MAX_POPULATION)
            ]
        else:
            tasks += [Task.of([r]) for r in group]
    return _spread(tasks, workers)


def worth_batching(speedup: float) -> bool:
    """Whether a group whose probe measured ``speedup`` (networks per second together over
    alone; 0 where a population cannot run) trains as a population: only a clear gain, since
    a population also loses per-run progress when a worker is interrupted and gives results
    equal to solo training only up to float rounding."""
    return speedup >= MIN_SPEEDUP  # False for NaN too


def _probe(group: list[RunSpec], workers: int, device: str, data_dir: str | None) -> float:
    """The measured speed-up, with as many torch threads as a worker will have."""
    threads = torch.get_num_threads()
    if workers > 1:
        torch.set_num_threads(1)
    try:
        splits = cached_splits(group[0].data.canonical_json(), data_dir)
        return population_speedup(group, splits, device)
    finally:
        torch.set_num_threads(threads)
        if torch.cuda.is_available():  # the probe's networks: not held while the runs train
            torch.cuda.empty_cache()


def _spread(tasks: list[Task], workers: int) -> list[Task]:
    """Split the largest populations until every worker has a task (or none can split)."""
    tasks = list(tasks)
    while len(tasks) < workers:
        largest = max(range(len(tasks)), key=lambda i: len(tasks[i].runs), default=None)
        if largest is None or len(tasks[largest].runs) < 4:
            break
        task = tasks.pop(largest)
        half = math.ceil(len(task.runs) / 2)
        tasks += [Task(task.runs[:half], True, task.ids[:half]),
                  Task(task.runs[half:], True, task.ids[half:])]
    return tasks
