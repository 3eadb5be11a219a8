"""The VC-dimension measure of Jiang et al. 2020 (appendix C.1, eq. 19), as its first author
computed it for the PGDL competition's VC-dimension baseline (Jiang 2020, Apache-2.0,
github.com/cadurosar/pgdl, baselines/vc_dim/complexity.py)."""

from __future__ import annotations

import math

from torch import nn

from gengap.measures.context import MeasureContext
from gengap.measures.features import weight_layers
from gengap.measures.registry import NotApplicable, measure

# the constant inside the logarithm of the baseline's bound, log(22 · d · q)
LOG_CONSTANT = 22


def vc_bound(depth: int, kernel_weights: int, positions: int) -> float:
    """d + 2·d·ω·ln(22·d·q): an upper bound on the VC dimension of a piecewise-linear
    network with d weight layers and ω kernel weights on inputs of q positions (of the form
    O(d·ω·log(d·q)), after Bartlett, Harvey, Liaw & Mehrabian 2019)."""
    return depth + 2 * depth * kernel_weights * math.log(LOG_CONSTANT * depth * positions)


@measure("vc_dim", group="size", needs=(), cost="A")
def vc_dim(ctx: MeasureContext) -> float:
    """d + 2·d·ω·ln(22·d·q) (Jiang et al. 2020, eq. 19, as the PGDL VC-dimension baseline by
    the same author computes it): d the number of Linear/Conv layers, ω their weights (kernels
    only: no biases, no BatchNorm), q the number of input positions (H·W of a convolutional
    network's image; 1 for a vector, and for a network of Linear layers only; the baseline
    hard-codes 32², the size of its CIFAR-type inputs); natural log."""
    layers = [m for _, m in weight_layers(ctx.model)]
    if not layers:
        raise NotApplicable("the model has no Linear or Conv layer")
    omega = sum(m.weight.numel() for m in layers)
    if all(isinstance(m, nn.Linear) for m in layers):
        positions = 1  # a dense network reads its input as one vector, whatever its shape
    elif ctx.input_shape is None:
        raise NotApplicable("vc_dim of a convolutional model needs the input shape")
    else:
        positions = math.prod(ctx.input_shape[1:]) if len(ctx.input_shape) > 1 else 1
    return vc_bound(len(layers), omega, positions)
