"""Where channels-last memory order is safe on the CPU.

torch 2.13's CPU backward of a 1x1 convolution with stride > 1 on a channels-last input of few
channels corrupts the heap (measured with one thread, as zoo workers run: glibc aborts with
"double free or corruption" or a segmentation fault, for 2 to 7 input channels; 8, 12, 16, 32,
64 and 200 channels gave the plain layout's gradients, and 3x3 or stride-1 kernels never
failed). gengap's ``resnet`` shortcut is such a convolution, with ``width`` input channels.
"""

from __future__ import annotations

from torch import nn

SAFE_CHANNELS = 8  # input channels per group from which the failure was not seen


def channels_last_safe(model: nn.Module) -> bool:
    """False when ``model`` holds a convolution whose channels-last backward can crash: a 1x1
    kernel with a stride above 1 and fewer than :data:`SAFE_CHANNELS` input channels per
    group."""
    return not any(
        isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) and m.stride != (1, 1)
        and m.in_channels // m.groups < SAFE_CHANNELS
        for m in model.modules()
    )
