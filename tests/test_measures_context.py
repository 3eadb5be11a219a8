"""The context's shared passes over the training data: the outputs and the penultimate
features come from one pass."""

from __future__ import annotations

import torch
from torch import nn

from gengap.measures import MeasureContext


def counted(model: nn.Module) -> list[int]:
    calls: list[int] = []
    model.register_forward_hook(lambda *_: calls.append(1))
    return calls


def test_the_logits_pass_also_records_the_penultimate_features() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 6), nn.ReLU(), nn.Linear(6, 4))
    x, y = torch.randn(50, 3), torch.randint(0, 4, (50,))
    calls = counted(net)
    ctx = MeasureContext(net, x_train=x, y_train=y, device="cpu", batch_size=16)
    logits = ctx.logits
    assert len(calls) == 4  # 50 examples in batches of 16
    feats = ctx.penultimate
    assert len(calls) == 4  # no second pass
    with torch.no_grad():
        torch.testing.assert_close(logits, net(x))
        torch.testing.assert_close(feats, net[:2](x).double())


def test_a_model_without_a_linear_head_still_has_its_logits() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 3, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    x, y = torch.randn(10, 1, 6, 6), torch.randint(0, 3, (10,))
    ctx = MeasureContext(net, x_train=x, y_train=y, device="cpu")
    with torch.no_grad():
        torch.testing.assert_close(ctx.logits, net(x))
