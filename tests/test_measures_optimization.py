"""Optimization measures (from the run's records; gradient noise against hand-written softmax
gradients) and the per-layer weight statistics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from gengap.measures import MeasureContext, compute, compute_timed
from gengap.specs import MeasureOptions


def test_step_measures_read_the_trajectory():
    net = nn.Sequential(nn.Linear(2, 2))
    ctx = MeasureContext(net, input_shape=(2,), device="cpu",
                         trajectory={"steps_to_ce_0.1": 120, "steps_to_ce_0.01": 400})
    got = compute(ctx, ["optim_steps_to_0.1", "optim_steps_0.1_to_0.01"])
    assert got == {"optim_steps_to_0.1": 120.0, "optim_steps_0.1_to_0.01": 280.0}
    never = MeasureContext(net, input_shape=(2,), device="cpu",
                           trajectory={"steps_to_ce_0.1": 120, "steps_to_ce_0.01": None,
                                       "steps": 900})
    assert math.isnan(compute(never, ["optim_steps_0.1_to_0.01"])["optim_steps_0.1_to_0.01"])
    assert never.no_value == {"optim_steps_0.1_to_0.01": "the run's records show training "
                              "cross-entropy never reached 0.01"}
    neither = MeasureContext(net, input_shape=(2,), device="cpu",
                             trajectory={"steps_to_ce_0.1": None, "steps_to_ce_0.01": None,
                                         "steps": 900})
    values = compute(neither, ["optim_steps_to_0.1", "optim_steps_0.1_to_0.01"])
    assert all(math.isnan(v) for v in values.values())
    assert set(neither.no_value.values()) == {"the run's records show training cross-entropy "
                                              "never reached 0.1"}
    imported = MeasureContext(net, input_shape=(2,), device="cpu",  # as zoo.measure gives it
                              trajectory={"steps_to_ce_0.1": None, "steps": None,
                                          "batch_size": 32})
    assert math.isnan(compute(imported, ["optim_steps_to_0.1"])["optim_steps_to_0.1"])
    assert imported.no_value == {"optim_steps_to_0.1": "the run has no training records (an "
                                 "imported network)"}


def test_step_measures_need_the_trajectory():
    from gengap.errors import GengapError

    ctx = MeasureContext(nn.Sequential(nn.Linear(2, 2)), input_shape=(2,), device="cpu")
    with pytest.raises(GengapError, match="trajectory"):
        compute(ctx, ["optim_steps_to_0.1"])


def test_grad_noise_is_the_variance_of_minibatch_gradients():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(3, 4)).astype(np.float32)
    b = rng.normal(size=3).astype(np.float32)
    x = rng.normal(size=(200, 4)).astype(np.float32)
    y = rng.integers(0, 3, size=200)
    layer = nn.Linear(4, 3)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(w))
        layer.bias.copy_(torch.from_numpy(b))
    opts = MeasureOptions(grad_batch=16, grad_batches=10, seed=5)
    ctx = MeasureContext(nn.Sequential(layer), x_train=torch.from_numpy(x),
                         y_train=torch.from_numpy(y), device="cpu", options=opts)
    got = compute(ctx, ["grad_noise"])["grad_noise"]

    from gengap.measures.streams import stream_seed  # the batches' order: seed 5, hashed

    order = torch.randperm(200, generator=torch.Generator().manual_seed(
        stream_seed(5, "grad-noise"))).numpy()
    grads = []
    for k in range(10):
        idx = order[k * 16 : (k + 1) * 16]
        logits = x[idx].astype(np.float64) @ w.T + b
        p = np.exp(logits - logits.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        p[np.arange(16), y[idx]] -= 1  # d CE / d logits = softmax − one-hot
        grads.append(np.concatenate([(p.T @ x[idx]).ravel() / 16, p.sum(0) / 16]))
    g = np.array(grads)
    expected = np.sum((g - g.mean(0)) ** 2) / (10 - 1)
    assert got == pytest.approx(expected, rel=1e-4)


def test_weight_statistics_are_per_layer_features():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(),
                        nn.Linear(2 * 3 * 3, 3, bias=False))
    net.eval()
    ctx = MeasureContext(net, input_shape=(1, 5, 5), device="cpu")
    timed = compute_timed(ctx, ["wstat"])
    folded = ctx.folded
    conv_w = folded[0].weight.detach().double().numpy().ravel()
    conv_b = folded[0].bias.detach().double().numpy()
    lin_w = folded[4].weight.detach().double().numpy().ravel()
    for prefix, values in (("wstat.l0.weight", conv_w), ("wstat.l0.bias", conv_b),
                           ("wstat.l1.weight", lin_w)):
        assert timed[f"{prefix}.mean"][0] == pytest.approx(values.mean())
        assert timed[f"{prefix}.var"][0] == pytest.approx(values.var())
        for q in (0, 25, 50, 75, 100):
            assert timed[f"{prefix}.q{q}"][0] == pytest.approx(np.percentile(values, q))
    assert "wstat.l1.bias.mean" not in timed  # the linear layer has no bias
    assert len(timed) == 3 * 7
