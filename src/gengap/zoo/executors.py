"""Executors run a list of :class:`Task` and hand back each run's outcome as its task finishes.

``local`` trains in this process (one worker) or in a spawned process pool (several, one torch
thread each). ``ray`` sends each task to a Ray cluster (``address``: ``auto``, ``ray://...`` or
``host:port``; none starts a local Ray) and gets the weights back with the outcomes, so the
cluster needs no shared file system: only the parent writes to the store.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import as_completed
from contextlib import contextmanager
from types import ModuleType

from gengap.device import named_device, resolve_device
from gengap.errors import GengapError
from gengap.registry import Registry
from gengap.zoo.pool import worker_pool
from gengap.zoo.worker import RunOutcome, Task, init_worker, train_task

Executor = Callable[..., Iterator[RunOutcome]]

executors: Registry[Executor] = Registry("executor")


@executors.register("local")
def run_local(
    tasks: list[Task], root: str, workers: int = 1, device: str = "auto",
    data_dir: str | None = None, address: str | None = None,
) -> Iterator[RunOutcome]:
    """Yield outcomes as tasks finish, running ``workers`` tasks at a time (``address`` is
    Ray's; :func:`gengap.zoo.run.check_options` refuses it here)."""
    if workers <= 1:
        for task in tasks:
            yield from train_task(task, root, device, data_dir)
        return
    with worker_pool(workers, init_worker) as pool:  # one torch thread each
        futures = [pool.submit(train_task, task, root, device, data_dir) for task in tasks]
        try:
            for future in as_completed(futures):
                yield from future.result()
        finally:
            for future in futures:
                future.cancel()


def _train_remote(task: Task, device: str, data_dir: str | None) -> list[RunOutcome]:
    init_worker(1)
    return train_task(task, None, device, data_dir)


@executors.register("ray")
def run_ray(
    tasks: list[Task], root: str, workers: int = 1, device: str = "auto",
    data_dir: str | None = None, address: str | None = None,
) -> Iterator[RunOutcome]:
    """Yield outcomes as Ray tasks finish (one CPU each, or one GPU with ``device`` cuda:
    :func:`cluster_device` turns ``auto`` into one of them first).

    Joins the Ray instance this process already started, else connects to ``address`` (or
    starts a local one, shut down at the end). ``workers`` > 1 caps the tasks in flight.
    """
    with session("ray", address):
        ray = _ray()
        gpus = 1 if device.startswith("cuda") else 0
        remote = ray.remote(num_cpus=1, num_gpus=gpus, max_retries=2)(_train_remote)
        cap = workers if workers > 1 else len(tasks)
        queue, running = list(tasks), []
        try:
            while queue or running:
                while queue and len(running) < cap:
                    running.append(remote.remote(queue.pop(0), device, data_dir))
                done, running = ray.wait(running, num_returns=1)
                yield from ray.get(done[0])
        finally:
            if ray.is_initialized():  # a cancel without Ray would start one
                for ref in running:
                    ray.cancel(ref, force=True)


def check_ray_device(device: str) -> None:
    """A device for Ray's tasks, checked by its name alone (the cluster's nodes have it, not
    necessarily this machine): ``auto``, ``cpu`` or ``cuda``. ``cuda:N`` is refused: Ray gives
    each task one GPU of its node and shows it that one alone, as ``cuda:0``."""
    if device == "auto":
        return
    named = named_device(device)
    if named.type not in ("cpu", "cuda") or named.index is not None:
        raise GengapError(f"device {device!r} with the ray executor: use auto, cpu or cuda "
                          "(Ray gives each task one GPU of its node)")


def cluster_device(device: str, population: str,
                   resources: Mapping[str, float] | None = None) -> str:
    """The device Ray's tasks train on: ``auto`` is ``cuda`` where the cluster has GPUs
    (``resources``: Ray's ``cluster_resources()``, read from the joined cluster by default),
    else ``cpu``; ``cuda`` on a cluster without GPUs is a one-line error (Ray would wait for
    one forever). ``population`` ``auto`` times each group on this machine, so it needs that
    device here too: a one-line error where this machine lacks it."""
    if device in ("auto", "cuda"):
        if resources is None:
            resources = _ray().cluster_resources()
        gpus = resources.get("GPU", 0) > 0
        if device == "cuda" and not gpus:
            raise GengapError("--device cuda: the Ray cluster has no GPU (its tasks would wait "
                              "for one forever)")
        device = "cuda" if gpus else "cpu"
    if population == "auto":
        try:
            resolve_device(device)
        except GengapError:
            raise GengapError(f"--population auto times each group on this machine, which "
                              f"cannot use the cluster's device {device!r}: give --population "
                              "on or off") from None
    return device


@contextmanager
def session(executor: str, address: str | None = None) -> Iterator[None]:
    """For ``ray``: this process joined to a Ray instance for the block: the one it already
    started, else the cluster at ``address`` (or a local one it starts), shut down at the end
    when started here. A one-line :class:`GengapError` where Ray is missing or nothing
    answers. :func:`gengap.zoo.run.train_zoo` opens it before it makes the zoo's folder, so
    that a cluster that is not there leaves no folder. Nothing for other executors."""
    if executor != "ray":
        yield
        return
    ray = _ray()
    started = not ray.is_initialized()
    if started:
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as err:
            raise GengapError(f"ray: cannot reach a cluster at {address!r} ({err})") from None
    try:
        yield
    finally:
        if started:
            ray.shutdown()


def _ray() -> ModuleType:
    try:
        import ray
    except ImportError:
        raise GengapError("--executor ray needs Ray: pip install 'gengap[ray]'") from None
    return ray
