"""Training a zoo: expand its spec into the store, then train whatever is still pending."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path

from gengap.device import resolve_device
from gengap.errors import GengapError
from gengap.specs import RunSpec, ZooSpec
from gengap.zoo.executors import (
    Executor,
    check_ray_device,
    cluster_device,
    executors,
    session,
)
from gengap.zoo.planning import PopulationMode, check_population_mode, plan_tasks
from gengap.zoo.pool import check_workers
from gengap.zoo.preflight import check_data_and_networks
from gengap.zoo.ray_address import check_reachable
from gengap.zoo.spec_file import check_runs
from gengap.zoo.store import DB_NAME, Store
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
    population: PopulationMode = "off",
    address: str | None = None,
    on_probe: Callable[[list[RunSpec], float], None] | None = None,
    options_checked: bool = False,
) -> Store:
    """Train every run of ``zoo`` not yet finished in the store at ``out``; return the store.

    Idempotent: a finished zoo trains nothing; an interrupted one trains only what is missing.
    ``executor`` is ``local`` (``workers`` processes) or ``ray`` (a Ray cluster at ``address``).
    ``population`` says whether same-shaped runs train as one batched population (``auto``:
    where a probe measures it faster). ``on_start(pending, total)`` is called once,
    ``on_outcome`` after each recorded run, ``on_probe(group, speedup)`` after each probe.
    ``options_checked``: the caller has just run :func:`check_options`, :func:`check_new_zoo`
    and, in the executor's session, :func:`session_device` (whose answer ``device`` is), as
    the command does before it draws anything; so none of them runs twice (a Ray address
    probed, the cluster's resources asked, the networks built).
    """
    check_workers(workers)
    run = (executors.get(executor) if options_checked
           else check_options(executor, population, address, device))
    check_runs(zoo, f"zoo {zoo.name!r}")  # before the folder exists: a typo leaves none
    if not options_checked:
        check_new_zoo(zoo, out, executor, data_dir)
    with session(executor, address):  # Ray joined before the folder exists
        if not options_checked:
            device = session_device(executor, device, population)
        store = Store.create(out, zoo)
        pending = store.runs(status="pending")
        data = str(data_dir) if data_dir else None
        tasks = plan_tasks(pending, population, workers, device, data, on_probe) \
            if pending else []
        if on_start:
            on_start(len(pending), sum(store.counts().values()))
        outcomes = run(tasks, str(store.root), workers=workers, device=device, data_dir=data,
                       address=address)
        # closed inside the session: an error or Ctrl-C cancels the tasks in flight before
        # Ray is shut down (a cancel at garbage collection, after it, would start a new Ray)
        with closing(outcomes):
            _record(store, outcomes, on_outcome)
    return store


def _record(store: Store, outcomes: Iterator[RunOutcome],
            on_outcome: Callable[[RunOutcome], None] | None) -> None:
    """Write each outcome into the store (weights, then the run's row) as it arrives."""
    for outcome in outcomes:
        for which, blob in outcome.weights.items():
            store.save_weight_bytes(outcome.run_id, which, blob)
        store.record(
            outcome.run_id, outcome.status, outcome.metrics, outcome.history, outcome.reason
        )
        if on_outcome:
            on_outcome(outcome)


def session_device(executor: str, device: str, population: str) -> str:
    """The device the tasks train on, once the executor's session is open: for Ray the one its
    cluster has (:func:`~gengap.zoo.executors.cluster_device`), else ``device`` as given.
    Called before the zoo folder is made, so that a cluster without it leaves none."""
    return cluster_device(device, population) if executor == "ray" else device


def check_new_zoo(zoo: ZooSpec, out: str | Path, executor: str,
                  data_dir: str | Path | None, source: str | None = None) -> None:
    """Before a zoo's folder is first made, try its data and networks once
    (:func:`check_data_and_networks`); a resumed zoo was tried when it was made. Not with Ray,
    whose workers may hold data this machine does not. ``source`` (the spec file) starts the
    message of a problem."""
    if executor != "local" or (Path(out) / DB_NAME).is_file():
        return
    try:
        check_data_and_networks(zoo.runs(), data_dir)
    except GengapError as err:
        raise GengapError(f"{source or f'zoo {zoo.name!r}'}: {err}") from None


def check_options(executor: str, population: str, address: str | None = None,
                  device: str = "auto") -> Executor:
    """The executor named ``executor``; a one-line error for it, a bad population mode, or an
    ``address`` given to an executor other than Ray or that nothing answers at, or a device
    this machine does not have."""
    check_population_mode(population)
    if address and executor != "ray":
        raise GengapError("an address is for the ray executor (--executor ray)")
    if executor == "ray":  # the cluster's nodes have the device, not necessarily this one
        check_ray_device(device)
    else:
        resolve_device(device)
    found = executors.get(executor)
    check_reachable(address)  # before the zoo folder is made
    return found
