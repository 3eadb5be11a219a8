"""A small pre-activation ResNet (He et al. 2016, identity mappings): a 3x3 stem convolution of
``width`` filters, three stages of ``depth`` residual blocks with ``width``, 2·``width`` and
4·``width`` filters (the first block of stages two and three halves the resolution), then batch
norm, the activation, global average pooling, dropout and a dense layer. Each block computes
x + conv(act(bn(conv(act(bn(x)))))), with a 1x1 convolution on the shortcut when the shape
changes. ``batch_norm = false`` leaves the norms out."""

from __future__ import annotations

import torch
from torch import nn

from gengap.models.families import ACTIVATIONS, image_shape, real_inputs, register_family, uses_norm
from gengap.specs import ArchSpec


def _norm(channels: int, on: bool) -> nn.Module:
    return nn.BatchNorm2d(channels) if on else nn.Identity()


class PreActBlock(nn.Module):
    """One pre-activation residual block."""

    def __init__(self, c_in: int, c_out: int, stride: int, spec: ArchSpec) -> None:
        super().__init__()
        norm = uses_norm(spec, True)
        self.bn1 = _norm(c_in, norm)
        self.act1 = ACTIVATIONS[spec.activation]()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=not norm)
        self.bn2 = _norm(c_out, norm)
        self.act2 = ACTIVATIONS[spec.activation]()
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=not norm)
        self.shortcut = (
            nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False)
            if stride != 1 or c_in != c_out else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(x))
        skip = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(self.act2(self.bn2(out)))
        return out + skip


@register_family("resnet")
def build_resnet(
    spec: ArchSpec, input_shape: tuple[int, ...], num_classes: int, vocab_size: int | None = None
) -> nn.Module:
    real_inputs("resnet", vocab_size)
    channels = image_shape("resnet", input_shape)[0]
    layers: list[nn.Module] = [nn.Conv2d(channels, spec.width, 3, padding=1)]
    channels = spec.width
    for stage in range(3):
        filters = spec.width * 2**stage
        for i in range(spec.depth):
            stride = 2 if stage > 0 and i == 0 else 1
            layers.append(PreActBlock(channels, filters, stride, spec))
            channels = filters
    layers += [
        _norm(channels, uses_norm(spec, True)),
        ACTIVATIONS[spec.activation](),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    ]
    if spec.dropout:
        layers.append(nn.Dropout(spec.dropout))
    layers.append(nn.Linear(channels, num_classes))
    return nn.Sequential(*layers)
