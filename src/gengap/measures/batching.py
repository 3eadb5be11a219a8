"""The batch size of the measures' forward passes.

On a CPU a batch whose layer outputs overflow the last-level cache runs slower per example:
on the 2-core development machine (32 MiB L3) a NiN with 200 channels ran its forward 1.7x
faster per example at batch 64 than at 1024, and its Hessian-vector products 2.1x, while an
MLP and the Small CNN Zoo network were fastest at 128 to 1024. So on a CPU the batch is the
largest power of two whose largest layer output fits in half the last-level cache; on a GPU
it is 1024."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

GPU_BATCH = 1024
LEAST, MOST = 16, 1024
FALLBACK_CACHE = 32 * 2**20  # bytes, when the system does not say


def last_level_cache(root: Path = Path("/sys/devices/system/cpu/cpu0/cache")) -> int:
    """Bytes of the CPU's largest cache (Linux sysfs), else :data:`FALLBACK_CACHE`."""
    sizes = []
    for index in root.glob("index*"):
        try:
            text = (index / "size").read_text().strip().upper()
        except OSError:
            continue
        scale = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1:], 1)
        digits = text.rstrip("KMG")
        if digits.isdigit():
            sizes.append(int(digits) * scale)
    return max(sizes, default=FALLBACK_CACHE)


@torch.no_grad()
def largest_output_bytes(model: nn.Module, example: torch.Tensor) -> int:
    """Bytes of the largest tensor a leaf module outputs for the batch ``example``."""
    sizes = [0]

    def record(module: nn.Module, inputs: object, output: object) -> None:
        if isinstance(output, torch.Tensor):
            sizes.append(output.numel() * output.element_size())

    leaves = [m for m in model.modules() if not list(m.children())]
    hooks = [m.register_forward_hook(record) for m in leaves]
    try:
        model(example)
    finally:
        for hook in hooks:
            hook.remove()
    return max(sizes)


def auto_batch_size(model: nn.Module, example: torch.Tensor | None,
                    device: torch.device, cache: int | None = None) -> int:
    """:data:`GPU_BATCH` off the CPU or without an example; else the largest power of two in
    [16, 1024] whose largest layer output (``example``: a batch of a few inputs, two where a
    BatchNorm without running statistics cannot take one) fits in half of ``cache`` bytes
    (default: the last-level cache)."""
    if device.type != "cpu" or example is None:
        return GPU_BATCH
    per_example = largest_output_bytes(model, example.to(device)) // len(example)
    budget = (cache or last_level_cache()) // 2
    batch = MOST
    while batch > LEAST and batch * per_example > budget:
        batch //= 2
    return batch
