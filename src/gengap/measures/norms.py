"""Norm-based measures (Jiang et al. 2020, appendix C.3). ``W_i`` are the Linear and Conv
weight matrices (conv kernels reshaped to c_out × c_in·k·k, BatchNorm folded, biases left
out), as in the reference implementation of Dziugaite et al. 2020."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from gengap.errors import GengapError
from gengap.measures.context import MeasureContext
from gengap.measures.context_checks import model_dtype
from gengap.measures.layers import batchnorm_affine, replace_module
from gengap.measures.registry import NotApplicable, measure
from gengap.models.mlp import OneHot


@measure("params", group="size", needs=(), cost="A")
def params(ctx: MeasureContext) -> float:
    """ω: the number of trainable parameters (Jiang et al. 2020, eq. 20)."""
    return float(sum(p.numel() for p in ctx.model.parameters() if p.requires_grad))


@measure("param_norm", group="norm", cost="A")
def param_norm(ctx: MeasureContext) -> float:
    """Σ_i ‖W_i‖_F²: the sum of squared Frobenius norms (Jiang et al. 2020, eq. 42)."""
    return sum(n**2 for n in ctx.frobenius_norms)


@measure("frobenius_distance", group="norm", needs=("weights", "init_weights"), cost="A")
def frobenius_distance(ctx: MeasureContext) -> float:
    """Σ_i ‖W_i − W_i⁰‖_F²: squared distance to initialization (Jiang et al. 2020, eq. 40)."""
    return sum(
        float(torch.sum((w - w0) ** 2)) for w, w0 in zip(ctx.weights, ctx.init_weights, strict=True)
    )


@measure("prod_of_spec", group="norm", cost="B")
def prod_of_spec(ctx: MeasureContext) -> float:
    """Π_i ‖W_i‖₂²: the product of squared spectral norms (Jiang et al. 2020, eq. 32)."""
    return math.prod(n**2 for n in ctx.spectral_norms)


@measure("prod_of_fro", group="norm", cost="A")
def prod_of_fro(ctx: MeasureContext) -> float:
    """Π_i ‖W_i‖_F²: the product of squared Frobenius norms (Jiang et al. 2020, eq. 37)."""
    return math.prod(n**2 for n in ctx.frobenius_norms)


@measure("path_norm", group="norm", needs=("weights", "input_shape"), cost="C")
@torch.no_grad()
def path_norm(ctx: MeasureContext) -> float:
    """Σ_j f_{w²}(1)[j]: the network with every parameter squared (biases included), applied
    to an all-ones input, summed over outputs (Jiang et al. 2020, eq. 44). For a ReLU network
    without biases this is the sum over input-output paths of the product of squared weights.
    A BatchNorm left unfolded (no layer feeds it directly) counts as the per-channel affine map
    a·x + c it computes, so as a²·x + c²; with token inputs every one-hot unit (every embedding
    row) is 1."""
    if ctx.input_shape is None:
        raise GengapError("path_norm needs the input shape (input_shape or x_train)")
    squared = _squared_copy(ctx)
    ones = torch.ones((1, *ctx.input_shape), device=ctx.device, dtype=model_dtype(squared))
    return float(squared(ones).double().sum())


def _squared_copy(ctx: MeasureContext) -> nn.Module:
    squared = copy.deepcopy(ctx.folded).eval()
    # a BatchNorm's statistics are not parameters: square the affine map it computes instead
    _replace(squared, _BatchNorm, _SquaredAffine.of)
    for p in squared.parameters():
        p.data.pow_(2)
    _replace(squared, OneHot, lambda m: _AllOnes(m.vocab_size))
    _replace(squared, nn.Embedding, lambda m: _AllOnes(m.embedding_dim, m.weight.sum(0)))
    return squared


def _replace(model: nn.Module, kind: type, make: Callable[[Any], nn.Module]) -> None:
    """Swap every submodule of ``kind`` for ``make(submodule)``."""
    for name, module in list(model.named_modules()):
        if name and isinstance(module, kind):
            replace_module(model, name, make(module))


class _SquaredAffine(nn.Module):
    """x ↦ a²·x + c² per channel (dim 1), where a·x + c is what a BatchNorm computes."""

    def __init__(self, scale: torch.Tensor, shift: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("scale", scale.pow(2))
        self.register_buffer("shift", shift.pow(2))

    @classmethod
    def of(cls, bn: _BatchNorm) -> _SquaredAffine:
        if bn.running_var is None:  # batch statistics only: no fixed map to square
            raise NotApplicable("path_norm: a BatchNorm without running statistics")
        scale, shift = batchnorm_affine(bn)
        return cls(scale.detach(), shift.detach())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        view = (1, -1, *([1] * (x.dim() - 2)))
        return x * self.scale.view(view) + self.shift.view(view)


class _AllOnes(nn.Module):
    """Token ids (N, L) ↦ (N, L, ``width``) filled with ``row``: the one-hot layer's all-ones
    output (``row`` = 1), or an embedding's (the sum of its squared rows)."""

    def __init__(self, width: int, row: torch.Tensor | None = None) -> None:
        super().__init__()
        self.register_buffer("row", torch.ones(width) if row is None else row.detach())

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.row.to(tokens.device).expand(*tokens.shape, -1)
