"""Executors run a list of pending runs and hand each outcome back as it finishes.

``local`` trains in this process (one worker) or in a process pool (several).
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed

from gengap.registry import Registry
from gengap.specs import RunSpec
from gengap.zoo.worker import RunOutcome, init_worker, train_run

Executor = Callable[..., Iterator[RunOutcome]]

executors: Registry[Executor] = Registry("executor")


@executors.register("local")
def run_local(
    runs: list[RunSpec], root: str, workers: int = 1, device: str = "auto",
    data_dir: str | None = None,
) -> Iterator[RunOutcome]:
    """Yield outcomes as runs finish, training ``workers`` runs at a time."""
    if workers <= 1:
        for run in runs:
            yield train_run(run.canonical_json(), root, device, data_dir)
        return
    # spawn, not fork: forking a process whose torch thread pools are running can deadlock.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=init_worker) as pool:
        futures = [
            pool.submit(train_run, run.canonical_json(), root, device, data_dir) for run in runs
        ]
        try:
            for future in as_completed(futures):
                yield future.result()
        finally:
            for future in futures:
                future.cancel()
