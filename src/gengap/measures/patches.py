"""A Linear or Conv layer's output as a linear function of its weight: z[:, :, p] = W · patch p
(+ b). Curvature measures build per-example weight gradients from these patches and the
gradient in z, differentiating with the parameters frozen."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from gengap.measures.registry import NotApplicable


@contextmanager
def parameters_frozen(model: nn.Module) -> Iterator[None]:
    """Autograd builds graphs only from the tensors we ask about, not from every weight."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def patch_obstacle(layer: nn.Module) -> str | None:
    """Why :func:`layer_patches` cannot take ``layer``, or None."""
    if isinstance(layer, nn.Linear):
        return None
    if not isinstance(layer, (nn.Conv1d, nn.Conv2d)):
        return f"{type(layer).__name__} is not a Linear, Conv1d or Conv2d layer"
    if layer.groups != 1:
        return f"a convolution of {layer.groups} groups"
    if layer.padding_mode != "zeros":
        return f"a convolution with padding_mode={layer.padding_mode!r}"
    if isinstance(layer.padding, str) and layer.padding != "valid":
        return f"a convolution with padding={layer.padding!r}"
    return None


def layer_patches(layer: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """The layer's input as (batch, features, positions): z[:, :, p] = W · patch p (+ b).
    Raises NotApplicable for a layer :func:`patch_obstacle` refuses."""
    if (why := patch_obstacle(layer)) is not None:
        raise NotApplicable(f"unsupported layer {layer}: {why}")
    if isinstance(layer, nn.Linear):
        return inputs.reshape(len(inputs), -1, inputs.shape[-1]).transpose(1, 2)
    padding = (0,) * len(layer.kernel_size) if isinstance(layer.padding, str) else layer.padding
    if all(k == 1 for k in layer.kernel_size) and not any(padding):
        # a 1x1 convolution's patches are its input's pixels (unfold would copy them slowly)
        index = (slice(None), slice(None)) + tuple(slice(None, None, st) for st in layer.stride)
        return inputs[index].reshape(len(inputs), inputs.shape[1], -1)
    if isinstance(layer, nn.Conv1d):  # a 1-d convolution is a 2-d one of height 1
        inputs = inputs.unsqueeze(2)
        pad, kernel = (0, padding[0] if padding else 0), (1, layer.kernel_size[0])
        stride, dilation = (1, layer.stride[0]), (1, layer.dilation[0])
    else:
        pad, kernel, stride, dilation = padding, layer.kernel_size, layer.stride, layer.dilation
    return nn.functional.unfold(inputs, kernel, dilation=dilation, padding=pad, stride=stride)
