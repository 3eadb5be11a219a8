"""Training one run of a zoo inside a worker: load its data, fit, write its weights.

The worker writes only weight files (atomically); the parent records the result in SQLite, so
the store has one writer and a killed worker leaves its run ``pending``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from gengap.data import Splits, load
from gengap.specs import DataSpec, RunSpec
from gengap.train import fit
from gengap.zoo.store import Store


@dataclass
class RunOutcome:
    """What the parent records for a run."""

    run_id: str
    status: str
    metrics: dict[str, Any]
    history: list[dict[str, float]] = field(default_factory=list)
    reason: str | None = None


@lru_cache(maxsize=8)
def _cached_splits(data_json: str, data_dir: str | None) -> Splits:
    return load(DataSpec.model_validate_json(data_json), data_dir)


def train_run(
    run_json: str, root: str, device: str = "auto", data_dir: str | None = None
) -> RunOutcome:
    """Train one run and save its initial and final weights into the store at ``root``."""
    run = RunSpec.model_validate_json(run_json)
    splits = _cached_splits(run.data.canonical_json(), data_dir)
    result = fit(run, splits, device=device)
    store = Store(Path(root))
    try:
        store.save_weights(run.run_id, "init", result.init_state)
        store.save_weights(run.run_id, "final", result.final_state)
    finally:
        store.close()
    return RunOutcome(run.run_id, result.status, result.metrics, result.history, result.reason)


def init_worker(threads: int = 1) -> None:
    """Process-pool initializer: one torch thread per worker, so workers don't oversubscribe."""
    torch.set_num_threads(threads)
