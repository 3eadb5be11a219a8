"""The VGG-like family of PGDL tasks 1 and 8: ``depth`` blocks of [3x3 conv, activation, 3x3
conv, activation, 2x2 max-pool], then ``dense_layers`` dense layers of ``dense_width`` units,
each followed by dropout, then a dense layer to the classes. ``width`` is the number of filters
of the last block (PGDL's varied "last-conv filters"); each earlier block has half the filters
of the next. Batch norm after each conv when switched on (off by default, as in PGDL)."""

from __future__ import annotations

from torch import nn

from gengap.errors import GengapError
from gengap.models.families import (
    ACTIVATIONS,
    COMMON_KNOBS,
    image_shape,
    real_inputs,
    register_family,
    uses_norm,
)
from gengap.specs import ArchSpec


def block_widths(spec: ArchSpec) -> list[int]:
    """Filters of each block: ``width`` for the last, halving towards the first."""
    return [max(1, spec.width >> (spec.depth - 1 - i)) for i in range(spec.depth)]


@register_family("vgg", (*COMMON_KNOBS, "dense_layers", "dense_width"))
def build_vgg(
    spec: ArchSpec, input_shape: tuple[int, ...], num_classes: int, vocab_size: int | None = None
) -> nn.Module:
    real_inputs("vgg", vocab_size)
    channels, height, width = image_shape("vgg", input_shape)
    if min(height, width) >> spec.depth < 1:
        raise GengapError(
            f"vgg: {spec.depth} max-pooled blocks need inputs of at least {2**spec.depth} pixels, "
            f"got {height}x{width}"
        )
    act = ACTIVATIONS[spec.activation]
    norm = uses_norm(spec, False)
    layers: list[nn.Module] = []
    for filters in block_widths(spec):
        for c_in in (channels, filters):
            layers.append(nn.Conv2d(c_in, filters, 3, padding=1, bias=not norm))  # BN: no bias
            if norm:
                layers.append(nn.BatchNorm2d(filters))
            layers.append(act())
        layers.append(nn.MaxPool2d(2))
        channels, height, width = filters, height // 2, width // 2
    layers.append(nn.Flatten())
    features = channels * height * width
    for _ in range(spec.dense_layers):
        layers += [nn.Linear(features, spec.dense_width), act()]
        if spec.dropout:
            layers.append(nn.Dropout(spec.dropout))
        features = spec.dense_width
    layers.append(nn.Linear(features, num_classes))
    return nn.Sequential(*layers)
