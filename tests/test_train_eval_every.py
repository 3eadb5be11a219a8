"""Sparse evaluation (TrainSpec.eval_every / eval_per_decade): which epochs are evaluated, that
training itself is unchanged, where the target and milestones are read, population training,
and that run ids of specs at the defaults did not change."""

from __future__ import annotations

import json

import pytest
import torch
from pydantic import ValidationError

from gengap.data import Splits, load
from gengap.specs import (
    ArchSpec,
    DataSpec,
    RunSpec,
    TrainSpec,
    ZooSpec,
    hyperparameter_values,
)
from gengap.train import fit, fit_population

MLP = ArchSpec(family="mlp", width=16, depth=1)


def blobs(n: int = 64, spread: float = 1.0) -> Splits:
    """Two Gaussian clusters in 5 dimensions, half for training, half for testing."""
    gen = torch.Generator().manual_seed(0)
    y = torch.arange(n) % 2
    x = torch.randn(n, 5, generator=gen) * spread + (y[:, None] * 2 - 1) * 2.0
    return Splits(x[: n // 2], y[: n // 2], x[n // 2 :], y[n // 2 :], num_classes=2)


def run(**train) -> RunSpec:
    return RunSpec(arch=MLP, train=TrainSpec(lr=0.01, batch_size=8, **train))


def test_run_ids_of_specs_at_the_defaults_are_unchanged():
    # Pinned before the evaluation knobs existed: they stay out of the JSON at their defaults.
    assert RunSpec().run_id == "49e2b59917531ac5"
    assert "eval_every" not in RunSpec().canonical_json()
    sparse = RunSpec(train=TrainSpec(eval_every=5))
    assert json.loads(sparse.canonical_json())["train"]["eval_every"] == 5
    assert sparse.run_id != RunSpec().run_id
    assert RunSpec.model_validate_json(sparse.canonical_json()) == sparse


def test_the_log_grid_and_the_regular_schedule():
    decade = TrainSpec(eval_per_decade=10)
    assert [e for e in range(1, 101) if decade.evaluates(e)] == [
        1, 2, 3, 4, 5, 6, 8, 10, 13, 16, 20, 25, 32, 40, 50, 63, 79, 100]
    assert [e for e in range(1, 1001) if TrainSpec(eval_per_decade=1).evaluates(e)] == [
        1, 10, 100, 1000]
    assert [e for e in range(1, 10) if TrainSpec(eval_every=4).evaluates(e)] == [4, 8]
    with pytest.raises(ValidationError, match="give one of them"):
        TrainSpec(eval_every=2, eval_per_decade=5)
    with pytest.raises(ValidationError):
        TrainSpec(eval_every=0)


def test_sparse_evaluation_keeps_the_training_and_the_evaluated_rows():
    every = fit(run(max_epochs=7, target_ce=0.0), blobs(), device="cpu")
    sparse = fit(run(max_epochs=7, target_ce=0.0, eval_every=3, checkpoints=(2,)), blobs(),
                 device="cpu")
    assert [row["epoch"] for row in sparse.history] == [3, 6, 7]  # and the last epoch
    assert sparse.metrics["epochs"] == every.metrics["epochs"] == 7
    assert sparse.metrics["steps"] == every.metrics["steps"]
    by_epoch = {row["epoch"]: row for row in every.history}
    for row in sparse.history:
        assert row == pytest.approx(by_epoch[row["epoch"]])
    for name, tensor in every.final_state.items():
        assert torch.equal(sparse.final_state[name], tensor), name
    assert sorted(sparse.checkpoints) == [2]  # kept although epoch 2 was not evaluated


def test_the_target_and_milestones_are_read_at_evaluations_only():
    every = fit(run(max_epochs=300, target_ce=0.01), blobs(), device="cpu")
    reached = every.metrics["epochs"]
    assert every.metrics["converged"] and reached > 4
    sparse = fit(run(max_epochs=300, target_ce=0.01, eval_every=4), blobs(), device="cpu")
    assert sparse.metrics["converged"]
    assert sparse.metrics["epochs"] == -(-reached // 4) * 4  # the first multiple of 4 after
    steps_at = {row["steps"] for row in sparse.history}
    for level in ("0.1", "0.01"):
        assert sparse.metrics[f"steps_to_ce_{level}"] in steps_at
        assert sparse.metrics[f"steps_to_ce_{level}"] >= every.metrics[f"steps_to_ce_{level}"]


def test_the_step_bound_ends_with_an_evaluation():
    result = fit(run(max_steps=13, target_ce=0.0, eval_per_decade=1), blobs(), device="cpu")
    # 4 steps per epoch: epoch 1 is on the grid, the bound falls in epoch 4
    assert [row["epoch"] for row in result.history] == [1, 4]
    assert result.history[-1]["steps"] == 13
    assert result.metrics["stopped_by"] == "max_steps" and result.metrics["epochs"] == 4


def test_population_training_follows_the_same_schedule():
    runs = [RunSpec(arch=MLP, data=DataSpec(name="digits", train_fraction=0.2), seed=1,
                    train=TrainSpec(lr=lr, max_epochs=5, target_ce=0.0, eval_every=2,
                                    checkpoints=(1,)))
            for lr in (0.01, 0.03)]
    splits = load(runs[0].data)
    together = fit_population(runs, splits, device="cpu")
    for spec, result in zip(runs, together, strict=True):
        alone = fit(spec, splits, device="cpu")
        assert [row["epoch"] for row in result.history] == [2, 4, 5]
        assert result.metrics["epochs"] == alone.metrics["epochs"] == 5
        assert sorted(result.checkpoints) == sorted(alone.checkpoints) == [1]
        for mine, theirs in zip(result.history, alone.history, strict=True):
            assert mine == pytest.approx(theirs, abs=2e-5)


def test_a_zoo_axis_over_the_schedule():
    zoo = ZooSpec(train=TrainSpec(max_epochs=3), axes={"train.eval_every": (1, 2)})
    runs = zoo.runs()
    ids = [r.run_id for r in runs]
    assert ids[0] == RunSpec(train=TrainSpec(max_epochs=3)).run_id and len(set(ids)) == 2
    # only the id leaves the default out: dumps (stored hyperparameters, exports) keep it
    assert [hyperparameter_values(r, zoo.hyperparameters) for r in runs] == [
        {"train.eval_every": 1}, {"train.eval_every": 2}]
    assert runs[0].model_dump(mode="json")["train"]["eval_per_decade"] is None
