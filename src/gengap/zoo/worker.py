"""Training runs of a zoo inside a worker: load the data, fit (alone or as one population),
and hand back each run's outcome with its weights.

A local worker writes weight files into the store folder (atomically) and returns metrics only;
a worker that may sit on another machine (Ray) returns the weights as safetensors bytes for the
parent to write. Either way the parent alone records results in SQLite, so the store has one
writer and a killed worker leaves its runs ``pending``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from gengap.data import Splits, load
from gengap.specs import DataSpec, RunSpec
from gengap.train import TrainResult, fit, fit_population
from gengap.zoo.store import Store, weight_bytes


@dataclass
class RunOutcome:
    """What the parent records for a run (and, from remote workers, the weights to write:
    ``which -> safetensors bytes``, with ``which`` in init, final, epoch<N>)."""

    run_id: str
    status: str
    metrics: dict[str, Any]
    history: list[dict[str, float]] = field(default_factory=list)
    reason: str | None = None
    weights: dict[str, bytes] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class Task:
    """One unit of work for a worker: runs trained one after another, or as one population."""

    runs: tuple[str, ...]  # canonical run-spec JSON
    population: bool = False
    # The parent's run ids: a worker with another version of gengap (a Ray node, a pool
    # started while the package was upgraded) could hash a spec differently.
    ids: tuple[str, ...] = ()

    @classmethod
    def of(cls, runs: list[RunSpec], population: bool = False) -> Task:
        return cls(tuple(r.canonical_json() for r in runs), population,
                   tuple(r.run_id for r in runs))


@lru_cache(maxsize=8)
def cached_splits(data_json: str, data_dir: str | None) -> Splits:
    return load(DataSpec.model_validate_json(data_json), data_dir)


def weight_files(result: TrainResult) -> dict[str, dict[str, torch.Tensor]]:
    """The weight files of a run: ``init``, ``final`` and ``epoch<N>`` per kept checkpoint."""
    files = {"init": result.init_state, "final": result.final_state}
    files.update({f"epoch{epoch}": state for epoch, state in result.checkpoints.items()})
    return files


def train_task(
    task: Task, root: str | None, device: str = "auto", data_dir: str | None = None
) -> list[RunOutcome]:
    """Train a task's runs. With ``root`` the weights go into the store there; without, they
    travel back inside the outcomes."""
    runs = [RunSpec.model_validate_json(text) for text in task.runs]
    ids = task.ids or tuple(run.run_id for run in runs)
    splits = cached_splits(runs[0].data.canonical_json(), data_dir)
    results: list[TrainResult] = []
    if task.population and len(runs) > 1:
        try:
            results = fit_population(runs, splits, device=device)
        except (RuntimeError, NotImplementedError):  # an operation vmap cannot batch
            results = []
    if not results:
        results = [fit(run, cached_splits(run.data.canonical_json(), data_dir), device=device)
                   for run in runs]
    outcomes = []
    store = Store(Path(root)) if root else None
    try:
        for run_id, result in zip(ids, results, strict=True):
            files = weight_files(result)
            outcome = RunOutcome(
                run_id, result.status, result.metrics, result.history, result.reason
            )
            if store is not None:
                for which, state in files.items():
                    store.save_weights(run_id, which, state)
            else:
                outcome.weights = {which: weight_bytes(state) for which, state in files.items()}
            outcomes.append(outcome)
    finally:
        if store is not None:
            store.close()
    return outcomes


def train_run(
    run_json: str, root: str, device: str = "auto", data_dir: str | None = None
) -> RunOutcome:
    """Train one run and save its weights into the store at ``root``."""
    return train_task(Task.of([RunSpec.model_validate_json(run_json)]), root, device, data_dir)[0]


def init_worker(threads: int = 1) -> None:
    """Process-pool initializer: one torch thread per worker, so workers don't oversubscribe."""
    torch.set_num_threads(threads)
