"""Training a zoo: expand its spec into the store, then train whatever is still pending."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from gengap.specs import ZooSpec
from gengap.zoo.executors import executors
from gengap.zoo.store import Store
from gengap.zoo.worker import RunOutcome


def train_zoo(
    zoo: ZooSpec,
    out: str | Path,
    workers: int = 1,
    device: str = "auto",
    executor: str = "local",
    data_dir: str | Path | None = None,
    on_outcome: Callable[[RunOutcome], None] | None = None,
    on_start: Callable[[int, int], None] | None = None,
) -> Store:
    """Train every run of ``zoo`` not yet finished in the store at ``out``; return the store.

    Idempotent: a finished zoo trains nothing; an interrupted one trains only what is missing.
    ``on_start(pending, total)`` is called once, ``on_outcome`` after each recorded run.
    """
    store = Store.create(out, zoo)
    pending = store.runs(status="pending")
    if on_start:
        on_start(len(pending), sum(store.counts().values()))
    run = executors.get(executor)
    outcomes = run(
        pending, str(store.root), workers=workers, device=device,
        data_dir=str(data_dir) if data_dir else None,
    )
    for outcome in outcomes:
        store.record(
            outcome.run_id, outcome.status, outcome.metrics, outcome.history, outcome.reason
        )
        if on_outcome:
            on_outcome(outcome)
    return store
