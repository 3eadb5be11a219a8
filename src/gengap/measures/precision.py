"""The arithmetic of the Monte Carlo forward passes (the σ′ and α′ searches, module criticality):
float32, or bfloat16 under ``torch.autocast`` where the hardware computes it natively.

These passes ask whether a perturbed network still answers right, or whether its mean loss
stays under a limit, thousands of times. bfloat16 keeps 8 significant bits (products are
accumulated in float32): a perturbation smaller than a weight's spacing is quantized, not
resolved (round to nearest: its errors are symmetric about zero). On the issue-10 NiN at σ′
the answers of perturbed networks (5 draws) differed between the two on 0.15 % of 2,000
training examples and their accuracy by 0.0003 (the searches' tolerance is 0.01), while the
searches ran 3.1-6.8x faster on a CPU with AMX. Every other measure, and BatchNorm folding's
check, computes in the model's own dtype.
"""

from __future__ import annotations

import contextlib
import math

import torch
from torch import nn

# "auto" takes bfloat16 for models of at least this many FLOPs per example: below it the casts
# cost more than they save (2 threads, 128 examples: a 0.36 MFLOP CNN 0.93x, a 1.3 MFLOP MLP
# 1.2x, a 6.8 MFLOP NiN 1.8x faster than float32)
AUTO_MIN_FLOPS = 1_000_000


def native_bfloat16(device: torch.device) -> bool:
    """Whether ``device`` multiplies bfloat16 matrices in hardware: a CUDA device that supports
    it, or a CPU with AMX tiles or AVX512-BF16 (where oneDNN runs bfloat16 convolutions and
    matrix products faster than float32; elsewhere they are emulated, and slower)."""
    if device.type == "cuda" and torch.version.hip is not None:  # ROCm: its own capabilities
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cuda":  # from Ampere on; is_bf16_supported also counts emulation
        return torch.cuda.get_device_capability(device)[0] >= 8
    if device.type != "cpu":
        return False
    probes = (getattr(torch.cpu, "_is_amx_tile_supported", None),
              getattr(torch.cpu, "_is_avx512_bf16_supported", None))
    return any(probe is not None and probe() for probe in probes)


def forward_flops(model: nn.Module, example: torch.Tensor) -> int:
    """FLOPs (two per multiply-add) of the matrix products of one forward pass of ``model`` on
    ``example`` (a batch of one): every Linear and Conv layer, and multi-head attention's
    projections and its two products over the sequence; activations, norms and pooling (a few
    FLOPs per value) are left out. Counted by forward hooks (torch's FlopCounterMode costs
    over a second on its first use), with gradients on, so that attention runs the module
    rather than its fused path (which no hook sees)."""
    total = 0

    def linear(module: nn.Linear, _args: tuple, out: torch.Tensor) -> None:
        nonlocal total
        total += 2 * module.in_features * out.numel()

    def conv(module: nn.modules.conv._ConvNd, _args: tuple, out: torch.Tensor) -> None:
        nonlocal total
        per_output = module.in_channels // module.groups * math.prod(module.kernel_size)
        total += 2 * per_output * out.numel()

    def attention(module: nn.MultiheadAttention, args: tuple, kwargs: dict,
                  _out: object) -> None:
        nonlocal total
        query = args[0] if args else kwargs["query"]
        key = args[1] if len(args) > 1 else kwargs["key"]
        width = module.embed_dim
        targets, sources = query.numel() // width, key.numel() // width  # a batch of one
        projections = width * width * (2 * targets + 2 * sources)  # q, out; k, v
        total += 2 * (projections + 2 * targets * sources * width)  # scores, weighted sum

    handles = []
    for module in model.modules():
        if isinstance(module, nn.Linear):
            handles.append(module.register_forward_hook(linear))
        elif isinstance(module, nn.modules.conv._ConvNd):
            handles.append(module.register_forward_hook(conv))
        elif isinstance(module, nn.MultiheadAttention):
            handles.append(module.register_forward_hook(attention, with_kwargs=True))
    try:
        with torch.enable_grad():
            model(example)
    finally:
        for handle in handles:
            handle.remove()
    return total


def monte_carlo_dtype(precision: str, model: nn.Module, example: torch.Tensor | None,
                      device: torch.device) -> torch.dtype | None:
    """The autocast dtype of the Monte Carlo passes for ``MeasureOptions.precision`` and a
    float32 ``model``: ``bfloat16`` for "bfloat16"; for "auto", bfloat16 where the device
    computes it natively (:func:`native_bfloat16`) and a forward pass on ``example`` (a batch
    of one; None: not counted, float32) costs at least :data:`AUTO_MIN_FLOPS`; ``None`` (no
    autocast) otherwise, and for a model in another dtype (float64 is kept for its precision;
    autocast would not lower it anyway). The threshold was measured on a CPU; a GPU's break-even
    is likely higher, but there the searches are cheap either way."""
    if precision == "float32" or any(p.dtype != torch.float32 for p in model.parameters()):
        return None
    if precision == "bfloat16":
        return torch.bfloat16
    if not native_bfloat16(device) or example is None:
        return None
    return torch.bfloat16 if forward_flops(model, example) >= AUTO_MIN_FLOPS else None


def autocast(device: torch.device, dtype: torch.dtype | None
             ) -> contextlib.AbstractContextManager[None]:
    """``torch.autocast`` to ``dtype`` on ``device``; nothing when ``dtype`` is None. Without
    autocast's cache of cast weights: the passes change weights in place between forwards."""
    if dtype is None:  # float32 passes enter no autocast state at all
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype, cache_enabled=False)
