"""A fully connected network: ``depth`` hidden layers of ``width`` units. Token inputs (the
vector PVR and modular tasks) enter one-hot encoded, so the MLP sees what a transformer's
embedding sees, without learned embeddings."""

from __future__ import annotations

import math

import torch
from torch import nn

from gengap.models.families import ACTIVATIONS, register_family, uses_norm
from gengap.specs import ArchSpec


@register_family("mlp")
def build_mlp(
    spec: ArchSpec, input_shape: tuple[int, ...], num_classes: int, vocab_size: int | None = None
) -> nn.Module:
    layers: list[nn.Module] = [nn.Flatten()]
    features = math.prod(input_shape)
    if vocab_size is not None:
        layers.insert(0, OneHot(vocab_size))
        features *= vocab_size
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


class OneHot(nn.Module):
    """Token ids (N, L) -> one-hot floats (N, L, vocab_size)."""

    def __init__(self, vocab_size: int) -> None:
        super().__init__()
        self.vocab_size = vocab_size

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        # .long(): measures probe networks with float inputs (path norm's all-ones input)
        return nn.functional.one_hot(tokens.long(), self.vocab_size).float()
