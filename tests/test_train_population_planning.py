"""How a zoo decides, per group of population candidates, to train it together or alone."""

from __future__ import annotations

import math

import pytest

from gengap.errors import GengapError
from gengap.specs import ArchSpec, RunSpec, TrainSpec
from gengap.zoo.planning import MAX_POPULATION, MIN_SPEEDUP, plan_tasks, worth_batching


def grid(width: int, seeds=(0, 1), lrs=(0.01, 0.02, 0.05)) -> list[RunSpec]:
    return [RunSpec(arch=ArchSpec(family="mlp", width=width), seed=seed, train=TrainSpec(lr=lr))
            for seed in seeds for lr in lrs]


def test_worth_batching_needs_a_clear_measured_gain():
    assert worth_batching(MIN_SPEEDUP) and worth_batching(3.0)
    assert not worth_batching(MIN_SPEEDUP - 0.01)
    assert not worth_batching(1.0)  # as fast: keep per-run progress and bit-exact results
    assert not worth_batching(0.0)  # the population could not run
    assert not worth_batching(math.nan)


def test_auto_batches_only_the_groups_measured_faster():
    fast, slow = grid(8), grid(64)  # two architectures, two seeds each: four groups
    measured: list[tuple[int, int]] = []
    verdicts: list[float] = []

    def measure(group: list[RunSpec]) -> float:
        measured.append((group[0].arch.width, len(group)))
        return {8: 2.5, 64: 0.7}[group[0].arch.width]

    tasks = plan_tasks(fast + slow, "auto", measure=measure,
                       on_probe=lambda group, speedup: verdicts.append(speedup))
    assert measured == [(8, 3), (64, 3)]  # one probe per shape: the seeds share it
    assert verdicts == [2.5, 0.7]
    together = [t for t in tasks if t.population]
    assert [len(t.runs) for t in together] == [3, 3]  # the width-8 group of each seed
    assert {t.ids for t in together} == {tuple(r.run_id for r in fast[:3]),
                                         tuple(r.run_id for r in fast[3:])}
    alone = [t for t in tasks if not t.population]
    assert sorted(t.ids for t in alone) == sorted((r.run_id,) for r in slow)


def test_on_and_off_never_measure():
    def measure(group: list[RunSpec]) -> float:
        raise AssertionError("probed")

    runs = grid(8)
    on = plan_tasks(runs, "on", measure=measure)
    assert [(t.population, len(t.runs)) for t in on] == [(True, 3), (True, 3)]
    off = plan_tasks(runs, "off", measure=measure)
    assert [(t.population, len(t.runs)) for t in off] == [(False, 1)] * 6
    with pytest.raises(GengapError, match="unknown population mode"):
        plan_tasks(runs, "sometimes", measure=measure)  # type: ignore[arg-type]


def test_large_groups_are_probed_and_trained_in_bounded_populations():
    runs = grid(8, seeds=(0,), lrs=[0.001 * (i + 1) for i in range(MAX_POPULATION + 6)])
    sizes: list[int] = []
    tasks = plan_tasks(runs, "auto", measure=lambda group: sizes.append(len(group)) or 2.0)
    assert sizes == [MAX_POPULATION]
    assert [len(t.runs) for t in tasks] == [MAX_POPULATION, 6]
    assert all(t.population for t in tasks)
