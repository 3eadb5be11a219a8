"""The Small CNN Zoo network (Unterthiner et al. 2020), generalized by width and depth:
``depth`` 3x3 convolutions of ``width`` filters at stride 2, global average pooling, a dense
layer. At the defaults (depth 3, width 16) on 1-channel input with 10 classes it has 4,970
parameters. Padding 1 keeps 8x8 inputs usable through three stride-2 layers."""

from __future__ import annotations

from torch import nn

from gengap.models.families import ACTIVATIONS, register_family
from gengap.specs import ArchSpec


@register_family("cnn")
def build_cnn(spec: ArchSpec, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    if len(input_shape) != 3:
        raise ValueError(f"cnn expects (channels, height, width) inputs, got {input_shape}")
    layers: list[nn.Module] = []
    channels = input_shape[0]
    for _ in range(spec.depth):
        layers.append(nn.Conv2d(channels, spec.width, 3, stride=2, padding=1))
        if spec.batch_norm:
            layers.append(nn.BatchNorm2d(spec.width))
        layers.append(ACTIVATIONS[spec.activation]())
        channels = spec.width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    if spec.dropout:
        layers.append(nn.Dropout(spec.dropout))
    layers.append(nn.Linear(channels, num_classes))
    return nn.Sequential(*layers)
