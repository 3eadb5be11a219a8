"""The Network-in-Network family of the Fantastic-measures study (Jiang et al. 2020) and of PGDL
tasks 2, 6 and 9: ``depth`` blocks of a 3x3 stride-2 convolution and two 1x1 convolutions, each
followed by batch norm (when on, the default) and the activation, dropout at the end of each
block; then a 1x1 convolution to the classes and global average pooling, whose output are the
logits. (The reference re-implementation of Dziugaite et al. 2020 also puts batch norm and a
ReLU on the class maps; the study's description, followed here, does not.)"""

from __future__ import annotations

from torch import nn

from gengap.models.families import ACTIVATIONS, image_shape, real_inputs, register_family, uses_norm
from gengap.specs import ArchSpec


def _conv_unit(c_in: int, c_out: int, kernel: int, stride: int, spec: ArchSpec) -> list[nn.Module]:
    norm = uses_norm(spec, True)
    # A bias before batch norm is cancelled by it (and its zero gradient is noise to Adam).
    conv = nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=not norm)
    layers: list[nn.Module] = [conv]
    if norm:
        layers.append(nn.BatchNorm2d(c_out))
    layers.append(ACTIVATIONS[spec.activation]())
    return layers


@register_family("nin")
def build_nin(
    spec: ArchSpec, input_shape: tuple[int, ...], num_classes: int, vocab_size: int | None = None
) -> nn.Module:
    real_inputs("nin", vocab_size)
    channels = image_shape("nin", input_shape)[0]
    layers: list[nn.Module] = []
    for _ in range(spec.depth):
        layers += _conv_unit(channels, spec.width, 3, 2, spec)
        layers += _conv_unit(spec.width, spec.width, 1, 1, spec)
        layers += _conv_unit(spec.width, spec.width, 1, 1, spec)
        if spec.dropout:
            layers.append(nn.Dropout(spec.dropout))
        channels = spec.width
    layers += [nn.Conv2d(channels, num_classes, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return nn.Sequential(*layers)
