"""Empirical spectral densities (ESDs) of weight layers, as WeightWatcher defines them.

A Linear layer's ESD is the eigenvalues of WᵀW (the squared singular values of W). A conv
kernel of shape (c_out, c_in, k...) is cut into one c_out × c_in matrix per kernel position and
the eigenvalues of all slices are pooled into one ESD. By default conv slices are multiplied by
1/√2 first, as WeightWatcher's ``conv2d_norm=True`` does with pooled slices (it shifts the norm
metrics of conv layers by log10(1/2) and leaves α unchanged).

Eigenvalues are computed in batches: every slice of every layer (and of every network, in
:func:`eigenvalues_many`) that has the same shape goes through one ``torch.linalg.eigvalsh`` of
the Gram matrices WᵀW.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch
from torch import nn

from gengap.measures.layers import WEIGHT_LAYERS

CONV_SCALE = math.sqrt(0.5)


@dataclass(frozen=True)
class LayerSlices:
    """The matrices of one layer whose eigenvalues make its ESD.

    ``slices`` has shape (k, N, M) with N ≥ M (each slice transposed if needed); k = 1 for a
    Linear layer and the number of kernel positions for a convolution.
    """

    name: str
    kind: str
    slices: torch.Tensor

    @property
    def n_rows(self) -> int:
        return int(self.slices.shape[1])

    @property
    def n_cols(self) -> int:
        return int(self.slices.shape[2])

    @property
    def num_evals(self) -> int:
        return int(self.slices.shape[0] * self.slices.shape[2])


def kernel_slices(weight: torch.Tensor, conv_scale: bool = True) -> torch.Tensor:
    """(k, N, M) slices of a Linear weight (out, in) or a conv kernel (out, in, k...)."""
    w = weight.detach()
    if w.dim() == 2:
        s = w[None]
    else:
        s = w.flatten(2).permute(2, 0, 1)
        if conv_scale:
            s = s * CONV_SCALE
    return s.transpose(1, 2) if s.shape[1] < s.shape[2] else s


def batched_kernel_slices(weights: torch.Tensor, conv_scale: bool = True) -> torch.Tensor:
    """(B, k, N, M) slices of B same-shaped layers stacked as (B, out, in[, k...])."""
    w = weights.detach()
    if w.dim() == 3:
        s = w[:, None]
    else:
        s = w.flatten(3).permute(0, 3, 1, 2)
        if conv_scale:
            s = s * CONV_SCALE
    return s.transpose(2, 3) if s.shape[2] < s.shape[3] else s


def layer_slices(
    model: nn.Module, conv_scale: bool = True, dtype: torch.dtype = torch.float64
) -> list[LayerSlices]:
    """Every Linear, Conv and Embedding layer of ``model`` in registration order, as slices
    (an embedding table, vocabulary × width, is one matrix, as WeightWatcher takes it), and
    the input projections of attention (``in_proj_weight``, 3·width × width, or its separate
    q/k/v weights), which ``nn.MultiheadAttention`` holds as bare parameters rather than
    Linear layers (named as in the state dict, so a weight file gives the same table)."""
    out = []
    for name, module in model.named_modules():
        if isinstance(module, nn.MultiheadAttention):
            for key, weight in module.named_parameters(recurse=False):
                if key.endswith("weight") and weight.dim() == 2:
                    out.append(LayerSlices(f"{name}.{key}", "linear",
                                           kernel_slices(weight.to(dtype), conv_scale)))
        elif isinstance(module, (*WEIGHT_LAYERS, nn.Embedding)):
            kind = ("linear" if isinstance(module, nn.Linear) else
                    "embedding" if isinstance(module, nn.Embedding) else "conv")
            out.append(LayerSlices(name, kind, kernel_slices(module.weight.to(dtype), conv_scale)))
    return out


def state_slices(
    state: Mapping[str, torch.Tensor], conv_scale: bool = True, dtype: torch.dtype = torch.float64
) -> list[LayerSlices]:
    """Slices of the weight tensors of a state dict (names ending in ``weight`` with 2 dims,
    taken as Linear, or more, taken as conv), in the file's order, when no model is at hand
    (BatchNorm weights, 1-D, are not layers; nothing is folded)."""
    out = []
    for name, t in state.items():
        if name.endswith("weight") and t.is_floating_point() and t.dim() >= 2:
            kind = "linear" if t.dim() == 2 else "conv"
            out.append(LayerSlices(name.removesuffix(".weight"), kind,
                                   kernel_slices(t.to(dtype), conv_scale)))
    return out


def shuffled(slices: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each matrix of ``slices`` (…, N, M) with its entries randomly permuted (the
    randomized-ESD baseline: same entries, no correlations)."""
    flat = slices.reshape(-1, slices.shape[-2] * slices.shape[-1])
    noise = torch.rand(flat.shape, generator=generator, device="cpu").to(flat.device)
    return flat.gather(1, noise.argsort(dim=1)).reshape(slices.shape)


def eigenvalues_many(stacks: list[torch.Tensor]) -> list[torch.Tensor]:
    """Pooled, ascending eigenvalues of each stack of matrices (…, k, N, M), one svdvals call
    per distinct matrix shape. A stack with leading axes (B, k, N, M) gives (B, k·M)."""
    groups: dict[tuple[int, int], list[int]] = defaultdict(list)
    for i, s in enumerate(stacks):
        groups[(s.shape[-2], s.shape[-1])].append(i)
    out: list[torch.Tensor | None] = [None] * len(stacks)
    for (n, m), members in groups.items():
        flat = [stacks[i].reshape(-1, n, m) for i in members]
        mats = torch.cat(flat) if len(flat) > 1 else flat[0]
        # eigenvalues of the M x M Gram matrices WᵀW (N ≥ M): a symmetric eigensolver is
        # several times faster than an SVD, and float64 keeps them accurate to ~1e-16 λ_max
        evals = eigvalsh_split(mats.transpose(1, 2) @ mats).clamp(min=0)
        for i, part in zip(members, evals.split([f.shape[0] for f in flat]), strict=True):
            lead = stacks[i].shape[:-3]
            out[i] = part.reshape(*lead, -1).sort(dim=-1).values
    return out  # type: ignore[return-value]


def eigvalsh_split(grams: torch.Tensor) -> torch.Tensor:
    """``torch.linalg.eigvalsh`` of a batch of symmetric matrices, the batch split over torch's
    intra-op threads: a batched CPU eigensolver runs one matrix after another on one thread
    (the 18,000 16 × 16 Gram matrices of 1,000 Small-CNN-Zoo networks: 1.8x faster on 2)."""
    threads = torch.get_num_threads()
    if threads < 2 or grams.device.type != "cpu" or len(grams) < 64 * threads:
        return torch.linalg.eigvalsh(grams)
    with ThreadPoolExecutor(threads) as pool:
        return torch.cat(list(pool.map(torch.linalg.eigvalsh, grams.chunk(threads))))
