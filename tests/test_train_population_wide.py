"""The hand-written wide forward of a population computes what each member's own module computes:
outputs, gradients and batch-norm statistics, for members with different weights."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import stack_module_state

from gengap.models import build
from gengap.specs import ArchSpec
from gengap.train.wide import WideForward

CASES = {
    "mlp": (ArchSpec(family="mlp", width=12, depth=2), (10,), None),
    "mlp-bn-tanh": (ArchSpec(family="mlp", width=12, depth=2, batch_norm=True,
                             activation="tanh"), (10,), None),
    "mlp-tokens": (ArchSpec(family="mlp", width=12, depth=1), (5,), 7),
    "cnn": (ArchSpec(family="cnn"), (1, 28, 28), None),
    "cnn-bn-gelu": (ArchSpec(family="cnn", width=6, depth=2, batch_norm=True,
                             activation="gelu"), (3, 9, 9), None),
    "nin": (ArchSpec(family="nin", width=8, depth=2), (3, 12, 12), None),
    "vgg": (ArchSpec(family="vgg", width=8, depth=2, dense_layers=1, dense_width=10),
            (3, 8, 8), None),
}


def members(name: str, count: int = 3) -> tuple[list[nn.Module], torch.Tensor]:
    arch, shape, vocab = CASES[name]
    nets = []
    for seed in range(count):
        torch.manual_seed(seed)
        net = build(arch, shape, 4, vocab)
        nets.append(net if vocab else net.double())  # one-hot tokens are float32
    torch.manual_seed(100)
    x = torch.randint(0, vocab, (6, *shape)) if vocab else torch.randn(6, *shape).double()
    return nets, x


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_wide_forward_equals_each_member(name, training):
    nets, x = members(name)
    buffers = _equals_each_member(nets, x, training, shape=(3, 6, 4))
    for key, stacked in buffers.items():  # batch norm's running statistics and step count
        expected = torch.stack([dict(net.named_buffers())[key] for net in nets])
        torch.testing.assert_close(stacked, expected, msg=key)


def test_which_templates_have_a_wide_form():
    for name in CASES:
        assert WideForward.supports(members(name, 1)[0][0])
    resnet = build(ArchSpec(family="resnet", width=4, depth=1), (3, 8, 8), 4)
    assert not WideForward.supports(resnet)  # residual blocks: the population uses vmap
    with pytest.raises(ValueError, match="no wide form"):
        WideForward(resnet)


def test_convolutions_with_named_padding_are_left_to_vmap() -> None:
    def net(padding: int | str) -> nn.Module:
        return nn.Sequential(nn.Conv2d(1, 4, 3, padding=padding), nn.ReLU(), nn.Flatten(),
                             nn.Linear(4 * 6 * 6, 3))

    assert WideForward.supports(net(1))
    assert not WideForward.supports(net("same"))


def _equals_each_member(nets: list[nn.Module], x: torch.Tensor, training: bool = True,
                        shape: tuple[int, ...] | None = None) -> dict[str, torch.Tensor]:
    """The wide forward's outputs (of ``shape``, if given) and parameter gradients equal each
    member's; returns the stacked buffers it updated."""
    params, buffers = stack_module_state(nets)
    params = {k: v.detach().requires_grad_() for k, v in params.items()}
    buffers = {k: v.clone() for k, v in buffers.items()}
    for net in nets:
        net.train(training)
    out = WideForward(nets[0])(params, buffers, x, training)
    alone = torch.stack([net(x) for net in nets])
    if shape is not None:
        assert out.shape == alone.shape == shape
    tol = 1e-10 if out.dtype == torch.float64 else 1e-5
    torch.testing.assert_close(out, alone, rtol=tol, atol=tol)
    # a loss that weighs each member differently, so a mix-up of members would show
    weights = torch.randn(out.shape, dtype=out.dtype)
    grads = torch.autograd.grad((out * weights).sum(), list(params.values()))
    (alone * weights).sum().backward()
    for (key, _), grad in zip(params.items(), grads, strict=True):
        expected = torch.stack([dict(net.named_parameters())[key].grad for net in nets])
        torch.testing.assert_close(grad, expected, rtol=tol, atol=tol, msg=key)
    return buffers


@pytest.mark.parametrize("pool_first", [False, True], ids=["after-convs", "on-the-input"])
def test_global_average_pooling_on_non_square_inputs(pool_first):
    """Pooling is a pixel sum divided after (so its gradient stays broadcast): the same as
    each member's AdaptiveAvgPool2d, after a strided rectangular first convolution (its bias
    a column of the matrix product) and a grouped one, or on the shared input itself."""
    nets = []
    for seed in range(3):
        torch.manual_seed(seed)
        body = [] if pool_first else [nn.Conv2d(2, 3, (3, 2), stride=(2, 1), padding=1),
                                      nn.ReLU(), nn.Conv2d(3, 4, 3, padding=1), nn.ReLU()]
        channels = 2 if pool_first else 4
        nets.append(nn.Sequential(*body, nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(),
                                  nn.Linear(channels, 5)).double())
    torch.manual_seed(100)
    _equals_each_member(nets, torch.randn(6, 2, 7, 5, dtype=torch.float64))
