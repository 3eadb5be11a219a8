"""Population training gives each network the result of training it alone."""

from __future__ import annotations

import pytest
import torch

from gengap.data import load
from gengap.specs import ArchSpec, DataSpec, RunSpec, TrainSpec
from gengap.train import fit, fit_population, group_runs, population_key, population_speedup
from gengap.train.population import Population


@pytest.fixture(scope="module")
def digits():
    return load(DataSpec(name="digits", train_fraction=0.2))


def grid(arch: ArchSpec, lrs, wds, seed: int = 3, **train) -> list[RunSpec]:
    return [
        RunSpec(arch=arch, seed=seed,
                train=TrainSpec(lr=lr, weight_decay=wd, target_ce=0.0, max_epochs=3, **train))
        for lr in lrs for wd in wds
    ]


def assert_same(together, alone, atol=2e-5):
    assert together.status == alone.status and together.reason == alone.reason
    for key in ("epochs", "steps", "converged", "stopped_by", "train_size", "test_size"):
        assert together.metrics[key] == alone.metrics[key], key
    for key in ("train_loss", "test_loss", "train_acc", "test_acc"):
        assert together.metrics[key] == pytest.approx(alone.metrics[key], abs=atol, nan_ok=True)
    assert together.init_state.keys() == alone.init_state.keys()
    for name, tensor in alone.final_state.items():
        # rounding scales with the weights (a diverged run's reach 1e28)
        finite = tensor.float()[tensor.float().isfinite()]
        scale = max(1.0, float(finite.abs().max())) if finite.numel() else 1.0
        assert torch.allclose(together.final_state[name].float(), tensor.float(),
                              atol=atol * scale), name
        assert torch.equal(together.init_state[name], alone.init_state[name])
    assert sorted(together.checkpoints) == sorted(alone.checkpoints)


@pytest.mark.parametrize(
    ("arch", "train"),
    [
        (ArchSpec(family="mlp", width=16, depth=2),
         {"schedule": "cosine", "warmup_epochs": 0.5, "checkpoints": (2,)}),
        (ArchSpec(family="cnn", width=8, depth=2), {"optimizer": "adam", "flip": True,
                                                    "crop": 1}),
        (ArchSpec(family="nin", width=8, depth=1), {"optimizer": "adamw"}),  # batch norm on
        (ArchSpec(family="mlp", width=16, depth=1), {"optimizer": "rmsprop"}),
        (ArchSpec(family="mlp", width=16, depth=1, batch_norm=True),
         {"schedule": "step", "lr_steps": (1, 2)}),
        # 269 examples: a last minibatch of one, which batch norm cannot train on, is merged
        (ArchSpec(family="mlp", width=16, depth=1, batch_norm=True), {"batch_size": 134}),
    ],
    ids=["mlp-sgd-cosine", "cnn-adam-augmented", "nin-bn-adamw", "mlp-rmsprop", "mlp-bn-sgd",
         "mlp-bn-last-batch-of-one"],
)
def test_population_equals_training_alone(digits, arch, train):
    scale = 1.0 if train.get("optimizer", "sgd") == "sgd" else 0.1
    runs = grid(arch, [0.02 * scale, 0.05 * scale], [0.0, 1e-3], **train)
    # these families train through the hand-written wide forward (batch norm in train mode)
    assert Population(runs, digits, torch.device("cpu")).wide is not None
    together = fit_population(runs, digits, device="cpu")
    for run, result in zip(runs, together, strict=True):
        assert result.metrics["population"] == len(runs)
        assert_same(result, fit(run, digits, device="cpu"))
        if train.get("batch_size") == 134:
            assert len(digits.x_train) == 269 and result.metrics["steps"] == 3 * 2


@pytest.mark.slow
def test_vmap_population_equals_training_alone(digits):
    """A family without a wide form (residual blocks) trains under vmap, with the same result."""
    runs = [RunSpec(arch=ArchSpec(family="resnet", width=2, depth=1), seed=3,
                    train=TrainSpec(lr=lr, target_ce=0.0, max_epochs=1)) for lr in (0.02, 0.05)]
    assert Population(runs, digits, torch.device("cpu")).wide is None
    for run, result in zip(runs, fit_population(runs, digits, device="cpu"), strict=True):
        assert_same(result, fit(run, digits, device="cpu"))


def test_members_leave_when_they_converge_or_diverge(digits):
    arch = ArchSpec(family="mlp", width=32, depth=1)
    runs = [
        RunSpec(arch=arch, seed=1, train=TrainSpec(lr=lr, momentum=m, max_epochs=6,
                                                   target_ce=target))
        for lr, m, target in [(0.1, 0.9, 0.3), (0.05, 0.9, 0.0), (1e30, 0.0, 0.0), (0.01, 0.5, 0.0)]
    ]
    together = fit_population(runs, digits, device="cpu")
    alone = [fit(run, digits, device="cpu") for run in runs]
    assert together[0].metrics["stopped_by"] == "target_ce" and together[0].metrics["epochs"] < 6
    assert together[2].status == "failed" and together[2].reason.startswith("diverged")
    # the sizes the robust sign-error weighs gaps by are recorded
    assert {r.metrics["test_size"] for r in together} == {len(digits.x_test)}
    for a, b in zip(together, alone, strict=True):
        assert_same(a, b)


def test_grouping():
    base = RunSpec(arch=ArchSpec(family="mlp"))
    lr = base.model_copy(update={"train": base.train.model_copy(update={"lr": 0.5})})
    seed = base.model_copy(update={"seed": 1})
    batch = base.model_copy(update={"train": base.train.model_copy(update={"batch_size": 8})})
    dropout = base.model_copy(update={"arch": base.arch.model_copy(update={"dropout": 0.5})})
    assert population_key(base) == population_key(lr)
    assert population_key(base) != population_key(seed) != population_key(batch)
    assert population_key(dropout) is None
    groups = group_runs([base, seed, lr, dropout, batch, dropout])
    assert [len(g) for g in groups] == [2, 1, 1, 1, 1]


def test_the_probe_measures_a_speedup(digits):
    runs = grid(ArchSpec(family="mlp", width=8, depth=1), [0.01, 0.02], [0.0, 1e-4])
    assert population_speedup(runs, digits, device="cpu", steps=2) > 0


def test_micro_batches_give_the_result_of_training_alone(digits, monkeypatch):
    """A batch taken in micro-batches (gradients summed by their share of the batch), with a
    diverging member among them, still equals training each network alone."""
    from gengap.train import population as module

    arch = ArchSpec(family="cnn", width=8, depth=2)
    runs = [RunSpec(arch=arch, seed=2, train=TrainSpec(lr=lr, batch_size=100, target_ce=0.0,
                                                       max_epochs=2))
            for lr in (0.02, 0.05, 1e30)]
    pop = Population(runs, digits, torch.device("cpu"))
    # 8x8 digits: the widest activation is the first convolution's, 8 channels of 4x4 each
    assert pop.wide.widest_activation(pop.params, pop.buffers, digits.x_train[:1]) == 3 * 8 * 16
    assert pop.micro_batch(digits.x_train[:100]) == 100  # small: the whole batch
    monkeypatch.setattr(module, "MICRO_BATCH_ELEMENTS", 3 * 8 * 16 * 40)
    pop = Population(runs, digits, torch.device("cpu"))
    assert pop.micro_batch(digits.x_train[:100]) == 32  # the largest power of two under 40
    together = fit_population(runs, digits, device="cpu")
    assert together[2].status == "failed" and together[2].reason.startswith("diverged")
    for run, result in zip(runs, together, strict=True):
        assert_same(result, fit(run, digits, device="cpu"))


def test_no_micro_batches_with_batch_norm_or_vmap(digits, monkeypatch):
    from gengap.train import population as module

    monkeypatch.setattr(module, "MICRO_BATCH_ELEMENTS", 1)
    for arch in (ArchSpec(family="nin", width=4, depth=1), ArchSpec(family="resnet", width=2,
                                                                     depth=1)):
        pop = Population(grid(arch, [0.01, 0.02], [0.0]), digits, torch.device("cpu"))
        assert pop.micro_batch(digits.x_train[:64]) == 64
    # a family without batch norm that has no wide form (a transformer, say) runs under vmap
    pop = Population(grid(ArchSpec(family="mlp", width=4, depth=1), [0.01], [0.0]), digits,
                     torch.device("cpu"))
    pop.wide = None
    assert pop.micro_batch(digits.x_train[:64]) == 64
    pop = Population(grid(ArchSpec(family="mlp", width=4, depth=1), [0.01], [0.0]), digits,
                     torch.device("cpu"))
    assert pop.micro_batch(digits.x_train[:64]) == 16  # at least MIN_MICRO_BATCH


def test_micro_batches_of_a_chosen_size(digits):
    runs = grid(ArchSpec(family="mlp", width=4, depth=1), [0.01, 0.02], [0.0], batch_size=100)
    x, y = digits.x_train[:100], digits.y_train[:100]
    whole = Population(runs, digits, torch.device("cpu"))
    parts = Population(runs, digits, torch.device("cpu"), micro_batch=16)
    assert whole.micro_batch(x) == 100 and parts.micro_batch(x) == 16
    assert Population(runs, digits, torch.device("cpu"), micro_batch=512).micro_batch(x) == 100
    for got, want in zip(parts.losses_and_gradient(x, y), whole.losses_and_gradient(x, y),
                         strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)
    for size, arch in ((0, ArchSpec(family="mlp", width=4, depth=1)),
                       (16, ArchSpec(family="nin", width=4, depth=1))):
        with pytest.raises(ValueError, match=f"no micro-batches of {size} here"):
            Population(grid(arch, [0.01], [0.0]), digits, torch.device("cpu"), micro_batch=size)


def test_micro_batched_losses_overflow_as_the_whole_batch_does(digits, monkeypatch):
    """Per-example losses of 1e37: a mean over 100 overflows float32 where sums over parts of
    32 would not; the divergence check must see inf as training alone does."""
    from gengap.train import population as module

    monkeypatch.setattr(module, "MICRO_BATCH_ELEMENTS", 1)
    runs = grid(ArchSpec(family="mlp", width=4, depth=1), [0.01], [0.0], batch_size=100)
    pop = Population(runs, digits, torch.device("cpu"))
    last_bias = [name for name in pop.params if name.endswith("bias")][-1]
    with torch.no_grad():
        pop.params[last_bias][:, 0] = 1e37  # class 0 far ahead of the true ones
    x, y = digits.x_train[:100], digits.y_train[:100].clamp(min=1)
    losses, _ = pop.losses_and_gradient(x, y)
    assert pop.micro_batch(x) == 16
    assert losses.tolist() == [float("inf")]
