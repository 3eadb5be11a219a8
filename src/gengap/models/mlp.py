"""A fully connected network: ``depth`` hidden layers of ``width`` units."""

from __future__ import annotations

import math

from torch import nn

from gengap.models.families import ACTIVATIONS, register_family
from gengap.specs import ArchSpec


@register_family("mlp")
def build_mlp(spec: ArchSpec, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    layers: list[nn.Module] = [nn.Flatten()]
    features = math.prod(input_shape)
    for _ in range(spec.depth):
        layers.append(nn.Linear(features, spec.width))
        if spec.batch_norm:
            layers.append(nn.BatchNorm1d(spec.width))
        layers.append(ACTIVATIONS[spec.activation]())
        if spec.dropout:
            layers.append(nn.Dropout(spec.dropout))
        features = spec.width
    layers.append(nn.Linear(features, num_classes))
    return nn.Sequential(*layers)
