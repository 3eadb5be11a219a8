"""Pools of worker processes for training and measuring: spawned, and ending with their parent.

A parent killed outright (kill -9) cannot stop its pool; its workers would go on with their
runs unseen, and a resumed zoo would train or measure the same runs again beside them.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager

from gengap.errors import GengapError

PR_SET_PDEATHSIG = 1  # prctl option (linux/prctl.h)
MAX_WORKERS = 1024  # the commands' bound on --workers


def check_workers(workers: int) -> None:
    """A one-line :class:`GengapError` for a worker count outside 1..:data:`MAX_WORKERS`,
    the bounds the commands' ``--workers`` has."""
    if not 1 <= workers <= MAX_WORKERS:
        raise GengapError(f"workers must be between 1 and {MAX_WORKERS}, not {workers}")


@contextmanager
def worker_pool(workers: int, init: Callable[[], None] | None = None
                ) -> Iterator[ProcessPoolExecutor]:
    """``workers`` processes that end when this process does (Linux), each running ``init``
    (a module-level function) first. Spawned, not forked: forking a process whose torch
    thread pools are running can deadlock. Leaving the block normally waits for the tasks;
    leaving it by an exception (Ctrl-C) ends the workers at once: a task in flight is lost
    either way (a run is recorded only once done), and waiting for it held Ctrl-C for a whole
    run, whose result was then thrown away. A worker that dies (killed, out of memory) ends
    the block with a one-line :class:`GengapError`."""
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_start_worker, initargs=(os.getpid(), init))
    try:
        yield pool
    except BrokenProcessPool as err:
        _stop_now(pool)
        if err.__cause__ is not None:  # a result that did not unpickle: gengap's bug, traced
            raise
        # a worker ended: killed (kill -9, the kernel out of memory), or by an error it printed
        raise GengapError("a worker process ended abruptly (killed, out of memory, or an error "
                          "it printed above); what finished before is kept: run the command "
                          "again to go on") from None
    except BaseException:
        _stop_now(pool)
        raise
    pool.shutdown(wait=True)


def _stop_now(pool: ProcessPoolExecutor) -> None:
    processes = list((getattr(pool, "_processes", None) or {}).values())  # no public way (3.11)
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.terminate()
    for process in processes:
        process.join(timeout=5)
        if process.is_alive():  # did not take SIGTERM: SIGKILL
            process.kill()
            process.join(timeout=5)


def _start_worker(parent: int, init: Callable[[], None] | None) -> None:
    end_with_parent(parent)
    if init is not None:
        init()


def end_with_parent(parent: int) -> None:
    """Have the kernel end this process (SIGTERM) when its parent ``parent`` dies; Linux only,
    elsewhere nothing changes."""
    if sys.platform != "linux":
        return
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # no prctl: as before
        return
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)
