"""Worker pools end at once when their block is left by an exception (Ctrl-C): `zoo train
--workers 2` used to wait for the runs in flight, then throw them away (9.4 s after Ctrl-C
in QA, weight folders of unrecorded runs left behind)."""

from __future__ import annotations

import time

import pytest

from gengap.zoo.pool import worker_pool


def test_leaving_a_pool_by_an_exception_ends_its_workers_at_once() -> None:
    started = time.perf_counter()
    with pytest.raises(KeyboardInterrupt), worker_pool(2) as pool:
        futures = [pool.submit(time.sleep, 120) for _ in range(4)]
        while not futures[0].running():  # a task in flight
            time.sleep(0.05)
        processes = list(pool._processes.values())
        raise KeyboardInterrupt
    assert time.perf_counter() - started < 60  # not the 120 s of the task in flight
    # is_alive can read True for a moment while the pool's own thread reaps the process
    for _ in range(100):
        if not any(p.is_alive() for p in processes):
            break
        time.sleep(0.1)
    assert processes and not any(p.is_alive() for p in processes)


def test_leaving_a_pool_normally_waits_for_its_tasks() -> None:
    with worker_pool(2) as pool:
        futures = [pool.submit(pow, 2, k) for k in range(6)]
    assert [f.result() for f in futures] == [2**k for k in range(6)]


def test_a_worker_that_dies_is_one_line() -> None:
    """kill -9 of a worker (or the kernel's out-of-memory killer) gave a 55-line traceback
    of BrokenProcessPool and exit status 1."""
    import os

    from gengap.errors import GengapError

    with pytest.raises(GengapError) as err, worker_pool(2) as pool:
        pool.submit(os._exit, 9).result()  # the worker ends as a killed one does
    assert str(err.value) == ("a worker process ended abruptly (killed, out of memory, or an "
                              "error it printed above); what finished before is kept: run the "
                              "command again to go on")
