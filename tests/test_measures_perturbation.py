"""The perturbed-copies forward of σ′/α′: the batched (vmap, the GPU path) and the looped
(the CPU path) forwards agree, and both equal an ordinary module with the same parameters."""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.func import vmap

from gengap.measures.layers import fold_batchnorm
from gengap.measures.perturbation import FlatNet


def test_batched_and_looped_perturbed_forwards_agree_with_plain_modules() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.Conv2d(8, 5, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    model[1].running_mean.uniform_(-1, 1)
    model[1].running_var.uniform_(0.5, 2)
    net = FlatNet(fold_batchnorm(model.eval(), torch.randn(2, 3, 8, 8)), torch.device("cpu"))
    vectors = net.vector + 0.05 * torch.randn(4, len(net.vector))
    xs = torch.randn(4, 6, 3, 8, 8)
    looped = net.forward_many(vectors, xs)  # the CPU's way: channels-last kernels, in turn
    net.channels_last = False  # a GPU's way: plain kernels under vmap
    with torch.no_grad():
        batched = vmap(net.forward)(vectors, xs)
    torch.testing.assert_close(batched, looped, atol=1e-5, rtol=1e-5)
    for k in range(4):
        plain = copy.deepcopy(net.model)
        torch.nn.utils.vector_to_parameters(vectors[k], plain.parameters())
        with torch.no_grad():
            torch.testing.assert_close(plain(xs[k]), looped[k], atol=1e-5, rtol=1e-5)
