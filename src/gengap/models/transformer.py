"""A small encoder for token tasks (pointer value retrieval, modular arithmetic): token and
learned position embeddings of ``width`` dimensions, ``depth`` pre-norm encoder layers with
``heads`` attention heads and a feed-forward layer of 4·``width`` units, a final layer norm, the
mean over positions, and a dense layer to the classes. Inputs are int64 token ids shaped
(N, seq_len); the data source gives the vocabulary size."""

from __future__ import annotations

import torch
from torch import nn

from gengap.errors import GengapError
from gengap.models.families import register_family
from gengap.specs import ArchSpec

_ACTIVATIONS = {"relu": torch.relu, "gelu": nn.functional.gelu, "tanh": torch.tanh}


class TokenEncoder(nn.Module):
    """Embeddings, a pre-norm transformer encoder, mean pooling and a linear head."""

    def __init__(self, spec: ArchSpec, seq_len: int, vocab_size: int, num_classes: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, spec.width)
        self.position = nn.Parameter(torch.randn(seq_len, spec.width) * 0.02)
        layer = nn.TransformerEncoderLayer(
            spec.width, spec.heads, dim_feedforward=4 * spec.width, dropout=spec.dropout,
            activation=_ACTIVATIONS[spec.activation], batch_first=True, norm_first=True,
        )
        # The nested-tensor fast path is inference-only and does not apply to pre-norm layers.
        self.encoder = nn.TransformerEncoder(layer, spec.depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(spec.width)
        self.head = nn.Linear(spec.width, num_classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.embed(tokens) + self.position
        h = self.norm(self.encoder(h))
        return self.head(h.mean(dim=1))


@register_family("transformer", ("width", "depth", "activation", "dropout", "heads"))
def build_transformer(
    spec: ArchSpec, input_shape: tuple[int, ...], num_classes: int, vocab_size: int | None = None
) -> nn.Module:
    if vocab_size is None or len(input_shape) != 1:
        raise GengapError(
            "architecture 'transformer' needs token inputs (int64, shaped (N, seq_len)) from a "
            f"source with a vocabulary size; got inputs of shape {input_shape}"
        )
    if spec.width % spec.heads:
        raise GengapError(
            f"transformer: width {spec.width} is not divisible by heads {spec.heads}"
        )
    if spec.batch_norm:
        raise GengapError("transformer: batch_norm is not available (it uses layer norm)")
    return TokenEncoder(spec, input_shape[0], vocab_size, num_classes)
