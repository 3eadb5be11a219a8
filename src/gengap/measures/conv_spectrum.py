"""Exact spectral norms of convolutions (Sedghi, Gupta & Long 2019, "The singular values of
convolutional layers"), at the size of each layer's actual input.

A stride-1 convolution with circular padding over an n₁×…×n_d input is diagonalized by the
d-dimensional DFT: its singular values are those of the c_out × c_in matrices
K̂(f) = Σ_x K[:, :, x] e^{−2πi⟨f, x/n⟩}, one per frequency f. The operator norm is the largest of
them. For zero padding or a stride above 1 this is the norm of the circular stride-1 operator on
the same input size (for strides, an upper bound), the convention of the reference
implementation, except that the size is the layer's own input size recorded by forward hooks
(the reference uses 32×32 for every layer).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from gengap.errors import GengapError
from gengap.measures.context_checks import model_dtype
from gengap.measures.layers import WEIGHT_LAYERS

CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


@torch.no_grad()
def conv_input_sizes(
    model: nn.Module, input_shape: tuple[int, ...] | None, device: torch.device | str = "cpu"
) -> dict[str, tuple[int, ...]]:
    """``name -> spatial size of its input`` for every convolution of ``model``, recorded by
    forward hooks while one all-zeros input of ``input_shape`` goes through it."""
    convs = {name: m for name, m in model.named_modules() if isinstance(m, CONVS)}
    if not convs:
        return {}
    if input_shape is None:
        raise GengapError("the FFT spectral norms need the input shape (input_shape or x_train)")
    sizes: dict[str, tuple[int, ...]] = {}

    def recorder(name: str):  # a forward hook must return None, or it replaces the output
        def record(_module: nn.Module, inputs: tuple, _output: torch.Tensor) -> None:
            sizes.setdefault(name, tuple(inputs[0].shape[2:]))

        return record

    hooks = [module.register_forward_hook(recorder(name)) for name, module in convs.items()]
    try:
        was_training = model.training
        model.eval()
        model(torch.zeros((1, *input_shape), device=device, dtype=model_dtype(model)))
        model.train(was_training)
    finally:
        for hook in hooks:
            hook.remove()
    return sizes


def conv_spectral_norm_fft(
    kernel: torch.Tensor, input_size: tuple[int, ...], groups: int = 1,
    dilation: tuple[int, ...] | None = None,
) -> float:
    """The largest singular value of the circular stride-1 convolution with ``kernel``
    (c_out, c_in/groups, k₁, …) over inputs of spatial size ``input_size``; ``dilation`` spaces
    the taps (a dilated convolution is the convolution with zeros between its taps)."""
    kernel = _dilate(kernel.detach().double(), dilation or ())
    spatial = kernel.dim() - 2
    if all(k == 1 for k in kernel.shape[2:]):  # a 1x1 kernel is the same matrix at every f
        blocks = kernel.reshape(groups, kernel.shape[0] // groups, kernel.shape[1])
        return float(torch.linalg.matrix_norm(blocks, ord=2).max())
    for axis, n in enumerate(input_size, start=2):
        kernel = _alias(kernel, axis, n)
    dims = tuple(range(2, 2 + spatial))
    # A real kernel's spectrum is conjugate-symmetric, so half the frequencies hold every
    # singular value (rfftn).
    spectrum = torch.fft.rfftn(kernel, s=list(input_size), dim=dims)
    per_freq = spectrum.permute(*range(2, 2 + spatial), 0, 1).reshape(-1, *kernel.shape[:2])
    c_out, c_in = kernel.shape[:2]
    per_group = per_freq.reshape(-1, groups, c_out // groups, c_in).reshape(
        -1, c_out // groups, c_in
    )
    return float(torch.linalg.matrix_norm(per_group, ord=2).max())


def _dilate(kernel: torch.Tensor, dilation: tuple[int, ...]) -> torch.Tensor:
    """The kernel with ``d - 1`` zeros between neighbouring taps along each spatial axis."""
    for axis, d in enumerate(dilation, start=2):
        if d == 1:
            continue
        moved = kernel.movedim(axis, -1)
        spaced = moved.new_zeros(*moved.shape[:-1], (moved.shape[-1] - 1) * d + 1)
        spaced[..., ::d] = moved
        kernel = spaced.movedim(-1, axis)
    return kernel


def _alias(kernel: torch.Tensor, axis: int, n: int) -> torch.Tensor:
    """A kernel wider than the input wraps around it: taps n apart add up (circular)."""
    k = kernel.shape[axis]
    if k <= n:
        return kernel
    wraps = -(-k // n)
    padded = torch.nn.functional.pad(
        kernel.movedim(axis, -1), (0, wraps * n - k)
    )
    return padded.reshape(*padded.shape[:-1], wraps, n).sum(-2).movedim(-1, axis)


# The norm of one convolution: (layer, its weight or a stand-in, the spatial size of its input).
ConvNorm = Callable[[nn.Module, torch.Tensor, tuple[int, ...]], float]


def fft_conv_norm(module: nn.Module, weight: torch.Tensor, size: tuple[int, ...]) -> float:
    """:func:`conv_spectral_norm_fft` of ``weight`` with ``module``'s groups and dilation."""
    return conv_spectral_norm_fft(weight, size, module.groups, tuple(module.dilation))


def layer_spectral_norms(
    model: nn.Module, sizes: dict[str, tuple[int, ...]], conv_norm: ConvNorm = fft_conv_norm,
    subtract: nn.Module | None = None,
) -> list[float]:
    """Operator norm of every Linear and Conv layer (registration order, as
    :func:`weight_matrices`), convolutions by ``conv_norm`` (default: by FFT,
    :func:`fft_conv_norm`) at the recorded input sizes; with ``subtract`` (a same-shaped
    model), of ``W − W_subtract``."""
    others = dict(subtract.named_modules()) if subtract is not None else {}
    norms = []
    for name, module in model.named_modules():
        if not isinstance(module, WEIGHT_LAYERS):
            continue
        weight = module.weight.detach().double()
        if subtract is not None:
            weight = weight - others[name].weight.detach().double()
        if isinstance(module, CONVS):
            if name not in sizes:
                raise ValueError(f"convolution {name!r} did not run on the probe input")
            norms.append(conv_norm(module, weight, sizes[name]))
        else:
            norms.append(float(torch.linalg.matrix_norm(weight, ord=2)))
    return norms
