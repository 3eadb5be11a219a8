"""Training one network: the stopping rules, divergence, schedules, augmentation, checkpoints,
optimizers, and token inputs."""

from __future__ import annotations

import math

import pytest
import torch

from gengap.data import Splits
from gengap.errors import GengapError
from gengap.specs import ArchSpec, RunSpec, TrainSpec
from gengap.train import fit
from gengap.train.batches import EpochBatches
from gengap.train.schedules import lr_factor


def blobs(n: int = 64, seed: int = 0, spread: float = 0.5) -> Splits:
    """Two separable Gaussian clusters in 5 dimensions, half for training, half for testing."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = torch.randn(n, 5, generator=gen) * spread + (y[:, None] * 2 - 1) * 2.0
    return Splits(x[: n // 2], y[: n // 2], x[n // 2 :], y[n // 2 :], num_classes=2)


MLP = ArchSpec(family="mlp", width=16, depth=1)


def test_training_reaches_the_cross_entropy_target():
    run = RunSpec(arch=MLP, train=TrainSpec(lr=0.01, batch_size=8, max_epochs=300,
                                            target_ce=0.01))
    result = fit(run, blobs(spread=1.0), device="cpu")
    assert result.status == "done" and result.metrics["converged"]
    assert len(result.history) >= 2
    assert result.metrics["stopped_by"] == "target_ce"
    assert result.metrics["train_loss"] <= 0.01 < result.history[-2]["train_loss"]
    assert result.metrics["epochs"] == len(result.history) < 200
    assert result.metrics["steps_to_ce_0.1"] <= result.metrics["steps_to_ce_0.01"]


def test_a_diverging_run_fails_with_its_reason():
    run = RunSpec(arch=MLP, train=TrainSpec(lr=1e30, momentum=0.0, max_epochs=50))
    result = fit(run, blobs(), device="cpu")
    assert result.status == "failed"
    assert result.reason.startswith("diverged: training loss is")
    assert result.metrics["stopped_by"] == "diverged"
    for name in ("train_loss", "train_acc", "test_loss", "test_acc"):  # not the NaN logits'
        assert math.isnan(result.metrics[name]), name


def test_max_steps_stops_mid_epoch_and_evaluates():
    run = RunSpec(arch=MLP, train=TrainSpec(batch_size=4, max_steps=5, target_ce=0.0))
    result = fit(run, blobs(), device="cpu")
    assert result.metrics["steps"] == 5 and result.metrics["stopped_by"] == "max_steps"
    assert len(result.history) == 1 and result.history[0]["steps"] == 5


def test_checkpoints_are_kept_at_the_chosen_epochs():
    run = RunSpec(arch=MLP, train=TrainSpec(max_epochs=4, target_ce=0.0, checkpoints=(1, 3)))
    result = fit(run, blobs(), device="cpu")
    assert sorted(result.checkpoints) == [1, 3]
    assert result.metrics["stopped_by"] == "max_epochs"
    w1, w3 = result.checkpoints[1]["1.weight"], result.checkpoints[3]["1.weight"]
    assert not torch.equal(w1, w3) and not torch.equal(w3, result.final_state["1.weight"])


def test_only_a_network_that_cannot_train_on_one_example_merges_a_last_batch_of_one():
    from torch import nn

    from gengap.train.batches import fails_on_one_example

    dense = nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    wide = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.BatchNorm2d(2), nn.Flatten())
    assert fails_on_one_example(dense, torch.randn(1, 5))
    assert not fails_on_one_example(wide, torch.randn(1, 1, 4, 4))  # 16 values per channel
    assert not fails_on_one_example(nn.Linear(5, 2), torch.randn(1, 5))
    before = dense[1].running_mean.clone()
    fails_on_one_example(dense, torch.randn(1, 5))
    assert torch.equal(dense[1].running_mean, before)  # tried on a copy
    spec = TrainSpec(batch_size=16)
    x, y = torch.randn(33, 5), torch.zeros(33, dtype=torch.long)
    assert EpochBatches(x, y, spec, 0, torch.device("cpu"), merge_single=True).steps_per_epoch == 2
    assert EpochBatches(x, y, spec, 0, torch.device("cpu")).steps_per_epoch == 3


def test_an_epoch_cut_short_by_max_steps_has_no_checkpoint():
    # 32 examples in batches of 4: 8 steps an epoch; 20 steps end epoch 3 after 4 of its steps
    run = RunSpec(arch=MLP, train=TrainSpec(batch_size=4, max_steps=20, target_ce=0.0,
                                            checkpoints=(2, 3)))
    result = fit(run, blobs(), device="cpu")
    assert result.metrics["steps"] == 20 and result.metrics["epochs"] == 3
    assert sorted(result.checkpoints) == [2]


def test_same_spec_same_weights_and_the_seed_matters():
    run = RunSpec(arch=MLP, train=TrainSpec(max_epochs=2, target_ce=0.0, optimizer="adamw",
                                            lr=0.01, weight_decay=0.1, schedule="cosine"))
    a, b = fit(run, blobs(), device="cpu"), fit(run, blobs(), device="cpu")
    c = fit(run.model_copy(update={"seed": 1}), blobs(), device="cpu")
    assert all(torch.equal(a.final_state[k], b.final_state[k]) for k in a.final_state)
    assert not torch.equal(a.final_state["1.weight"], c.final_state["1.weight"])


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw", "rmsprop"])
def test_every_optimizer_lowers_the_loss(optimizer: str):
    lr = 0.05 if optimizer == "sgd" else 0.005
    run = RunSpec(arch=MLP, train=TrainSpec(optimizer=optimizer, lr=lr, max_epochs=5,
                                            target_ce=0.0, batch_size=8))
    result = fit(run, blobs(), device="cpu")
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"] < math.log(2) + 0.5


def test_schedules():
    warm = TrainSpec(warmup_epochs=1.0)
    assert [lr_factor(warm, s, 4) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    # warm-up steps: the nearest whole number, a half to the even one (as documented)
    for epochs, steps in ((0.625, 2), (1.125, 4), (0.375, 2), (0.875, 4), (0.125, 0)):
        rates = [lr_factor(TrainSpec(warmup_epochs=epochs), s, 4) for s in range(6)]
        assert rates == [(s + 1) / steps for s in range(steps)] + [1.0] * (6 - steps), epochs
    step = TrainSpec(schedule="step", lr_steps=(2, 3), lr_gamma=0.2)
    assert [lr_factor(step, s, 10) for s in (0, 19, 20, 29, 30)] == pytest.approx(
        [1, 1, 0.2, 0.2, 0.04]
    )
    cosine = TrainSpec(schedule="cosine", max_epochs=10)
    assert lr_factor(cosine, 0, 10) == 1.0
    assert lr_factor(cosine, 50, 10) == pytest.approx(0.5)
    assert lr_factor(cosine, 99, 10) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.99)))
    capped = TrainSpec(schedule="cosine", max_epochs=10, max_steps=20)
    assert lr_factor(capped, 10, 10) == pytest.approx(0.5)


def test_fit_follows_the_schedule():
    run = RunSpec(arch=MLP, train=TrainSpec(schedule="step", lr_steps=(1,), lr_gamma=0.5,
                                            max_epochs=2, target_ce=0.0))
    seen = []
    original = torch.optim.SGD.step

    def spy(self, *args, **kwargs):
        seen.append(self.param_groups[0]["lr"])
        return original(self, *args, **kwargs)

    torch.optim.SGD.step = spy
    try:
        fit(run, blobs(), device="cpu")
    finally:
        torch.optim.SGD.step = original
    per_epoch = len(seen) // 2
    assert seen[:per_epoch] == [0.05] * per_epoch and seen[per_epoch:] == [0.025] * per_epoch


def test_flips_and_crops():
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).view(2, 1, 4, 4)
    y = torch.tensor([0, 1])
    flips = EpochBatches(x, y, TrainSpec(flip=True, batch_size=2), 0, torch.device("cpu"))
    seen = set()
    for _ in range(20):
        (xb, yb), = flips.epoch()
        for image, label in zip(xb, yb, strict=True):
            original = x[label]
            assert torch.equal(image, original) or torch.equal(image, original.flip(-1))
            seen.add(torch.equal(image, original))
    assert seen == {True, False}
    crops = EpochBatches(x, y, TrainSpec(crop=1, batch_size=2), 0, torch.device("cpu"))
    for _ in range(20):
        (xb, yb), = crops.epoch()
        for image, label in zip(xb, yb, strict=True):
            padded = torch.nn.functional.pad(x[label], (1, 1, 1, 1))
            windows = [padded[:, i : i + 4, j : j + 4] for i in range(3) for j in range(3)]
            assert any(torch.equal(image, w) for w in windows)
    with pytest.raises(GengapError, match="need image inputs"):
        EpochBatches(torch.zeros(4, 5), y, TrainSpec(flip=True), 0, torch.device("cpu"))


def test_transformer_learns_a_token_task():
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 6, (96, 4), generator=gen)
    labels = tokens[:, 0] % 3  # the class is a function of the first token
    splits = Splits(tokens[:64], labels[:64], tokens[64:], labels[64:], num_classes=3,
                    vocab_size=6)
    run = RunSpec(arch=ArchSpec(family="transformer", width=16, depth=1, heads=2),
                  train=TrainSpec(optimizer="adam", lr=0.01, batch_size=16, max_epochs=60,
                                  target_ce=0.05))
    result = fit(run, splits, device="cpu")
    assert result.status == "done" and result.metrics["converged"]
    assert result.metrics["test_acc"] >= 0.8  # chance: 1/3


def test_bad_train_spec_values():
    with pytest.raises(ValueError, match="increasing"):
        TrainSpec(checkpoints=(3, 1))
    with pytest.raises(ValueError):
        TrainSpec(optimizer="lbfgs")


def test_evaluation_sums_losses_without_float32_overflow():
    """Each loss 3e35 is a float32, their sum over a 2,048-example chunk is not (a population
    sums in other chunks, so the two disagreed on whether the run diverged)."""
    from torch import nn

    from gengap.train.evaluation import evaluate_model

    model = nn.Linear(2, 2)
    with torch.no_grad():
        model.weight.zero_()
        model.bias.copy_(torch.tensor([0.0, 3e35]))
    loss, accuracy = evaluate_model(model, torch.zeros(3000, 2), torch.zeros(3000).long())
    assert loss == pytest.approx(3e35, rel=1e-6) and accuracy == 0.0
