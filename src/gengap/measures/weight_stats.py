"""Per-layer weight statistics (Unterthiner, Keysers, Gelly, Bousquet & Tolstikhin 2020,
"Predicting Neural Network Accuracy from Weights"), a feature vector for learned predictors.

``weight_stats`` is a vector-valued measure: it returns one float per feature, stored as the
columns ``wstat.l<i>.<weight|bias>.<stat>``, i the Linear/Conv layer's position (0, 1, ...)
in the order the BatchNorm-folded network registers its layers (no forward pass: from the
input for gengap's families and imported models, but a head registered first is 0), stat
one of mean, var, q0, q25, q50, q75, q100 (quantiles in percent; q0 and q100 are the minimum
and maximum). Networks of different depths share the columns of their common layers; a layer
a network lacks is a missing value in the store's frame.
"""

from __future__ import annotations

import numpy as np
import torch

from gengap.measures.context import MeasureContext
from gengap.measures.layers import WEIGHT_LAYERS
from gengap.measures.registry import measure

QUANTILES = (0, 25, 50, 75, 100)


def tensor_stats(values: torch.Tensor) -> dict[str, float]:
    """Mean, variance (population) and quantiles of a tensor's entries."""
    flat = values.detach().reshape(-1).double().cpu()
    qs = np.quantile(flat.numpy(), [q / 100 for q in QUANTILES])  # torch.quantile caps sizes
    return {
        "mean": float(flat.mean()),
        "var": float(flat.var(unbiased=False)),
        **{f"q{q}": float(v) for q, v in zip(QUANTILES, qs, strict=True)},
    }


@measure("wstat", group="weight_stats", needs=("weights",), cost="A", vector=True)
def weight_stats(ctx: MeasureContext) -> dict[str, float]:
    """Per-layer mean, variance and 0/25/50/75/100 % quantiles of weights and biases
    (Unterthiner et al. 2020), columns wstat.l<i>.<weight|bias>.<stat>."""
    layers = [m for m in ctx.folded.modules() if isinstance(m, WEIGHT_LAYERS)]
    out: dict[str, float] = {}
    for i, layer in enumerate(layers):
        for kind in ("weight", "bias"):
            tensor = getattr(layer, kind)
            if tensor is not None:
                out.update({f"l{i}.{kind}.{k}": v for k, v in tensor_stats(tensor).items()})
    return out
