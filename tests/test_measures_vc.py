"""The VC-dimension measure against the PGDL baseline's expression written out by hand:
d + 2·d·ω·ln(22·d·32²) for a convnet on 32x32 inputs, kernels only (no biases, no BatchNorm)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from gengap.measures import MeasureContext, compute


def convnet() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 16, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))


def test_vc_dim_of_a_convnet_on_32x32_inputs() -> None:
    net = convnet()
    x = torch.randn(4, 3, 32, 32)
    ctx = MeasureContext(net, x_train=x, y_train=torch.zeros(4, dtype=torch.long), device="cpu")
    kernels = 8 * 3 * 3 * 3 + 16 * 8 + 10 * 16  # the BN's 16 and the biases' 34 do not count
    expected = 3 + 2 * 3 * math.log(22 * 3 * 32**2) * kernels
    assert compute(ctx, ["vc_dim"])["vc_dim"] == pytest.approx(expected, rel=1e-12)


def test_vc_dim_uses_the_input_positions_and_needs_them_for_a_convnet() -> None:
    net = convnet()
    small = MeasureContext(net, input_shape=(3, 8, 8), device="cpu")
    kernels = 8 * 3 * 3 * 3 + 16 * 8 + 10 * 16
    assert compute(small, ["vc_dim"])["vc_dim"] == pytest.approx(
        3 + 6 * kernels * math.log(22 * 3 * 64), rel=1e-12)
    unknown = compute(MeasureContext(net, device="cpu"), ["vc_dim"])["vc_dim"]
    assert unknown != unknown  # NaN: a convnet's bound needs the input size


def test_vc_dim_of_a_dense_network_on_images_has_one_position() -> None:
    net = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 32), nn.ReLU(), nn.Linear(32, 10))
    kernels = 28 * 28 * 32 + 32 * 10
    expected = 2 + 2 * 2 * kernels * math.log(22 * 2 * 1)
    for ctx in (MeasureContext(net, input_shape=(1, 28, 28), device="cpu"),
                MeasureContext(net, device="cpu")):
        assert compute(ctx, ["vc_dim"])["vc_dim"] == pytest.approx(expected, rel=1e-12)
