"""Norm-based measures (Jiang et al. 2020, appendix C.3). ``W_i`` are the Linear and Conv
weight matrices (conv kernels reshaped to c_out × c_in·k·k, BatchNorm folded, biases left
out), as in the reference implementation of Dziugaite et al. 2020."""

from __future__ import annotations

import copy
import math

import torch

from gengap.measures.context import MeasureContext
from gengap.measures.registry import measure


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


@measure("path_norm", group="norm", cost="C")
@torch.no_grad()
def path_norm(ctx: MeasureContext) -> float:
    """Σ_j f_{w²}(1)[j]: the network with every parameter squared (biases included), applied
    to an all-ones input, summed over outputs (Jiang et al. 2020, eq. 44). For a ReLU network
    without biases this is the sum over input-output paths of the product of squared weights.
    """
    if ctx.input_shape is None:
        raise ValueError("path_norm needs the input shape")
    squared = _squared_copy(ctx)
    ones = torch.ones((1, *ctx.input_shape), device=ctx.device)
    return float(squared(ones).double().sum())


def _squared_copy(ctx: MeasureContext) -> torch.nn.Module:
    squared = copy.deepcopy(ctx.folded).eval()
    for p in squared.parameters():
        p.data.pow_(2)
    return squared
