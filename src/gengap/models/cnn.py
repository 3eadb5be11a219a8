"""The Small CNN Zoo network (Unterthiner et al. 2020), generalized by width and depth:
``depth`` 3x3 convolutions of ``width`` filters at stride 2, global average pooling, a dense
layer. At the defaults (depth 3, width 16) on 1-channel input with 10 classes it has 4,970
parameters. Padding 1 keeps 8x8 inputs usable through three stride-2 layers."""

from __future__ import annotations

from torch import nn

from gengap.models.families import ACTIVATIONS, image_shape, real_inputs, register_family, uses_norm
from gengap.specs import ArchSpec


@register_family("cnn")
def build_cnn(
    spec: ArchSpec, input_shape: tuple[int, ...], num_classes: int, vocab_size: int | None = None
) -> nn.Module:
    real_inputs("cnn", vocab_size)
    channels = image_shape("cnn", input_shape)[0]
    norm = uses_norm(spec, False)
    layers: list[nn.Module] = []
    for _ in range(spec.depth):
        # A bias before batch norm is cancelled by it (and its zero gradient is noise to Adam).
        layers.append(nn.Conv2d(channels, spec.width, 3, stride=2, padding=1, bias=not norm))
        if norm:
            layers.append(nn.BatchNorm2d(spec.width))
        layers.append(ACTIVATIONS[spec.activation]())
        channels = spec.width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    if spec.dropout:
        layers.append(nn.Dropout(spec.dropout))
    layers.append(nn.Linear(channels, num_classes))
    return nn.Sequential(*layers)
