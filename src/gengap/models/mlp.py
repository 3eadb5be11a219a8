"""A fully connected network: ``depth`` hidden layers of ``width`` units."""

from __future__ import annotations

import math

from torch import nn

from gengap.models.families import ACTIVATIONS, real_inputs, register_family, uses_norm
from gengap.specs import ArchSpec


@register_family("mlp")
def build_mlp(
    spec: ArchSpec, input_shape: tuple[int, ...], num_classes: int, vocab_size: int | None = None
) -> nn.Module:
    real_inputs("mlp", vocab_size)
    layers: list[nn.Module] = [nn.Flatten()]
    features = math.prod(input_shape)
    norm = uses_norm(spec, False)
    for _ in range(spec.depth):
        layers.append(nn.Linear(features, spec.width, bias=not norm))  # BN cancels a bias
        if norm:
            layers.append(nn.BatchNorm1d(spec.width))
        layers.append(ACTIVATIONS[spec.activation]())
        if spec.dropout:
            layers.append(nn.Dropout(spec.dropout))
        features = spec.width
    layers.append(nn.Linear(features, num_classes))
    return nn.Sequential(*layers)
