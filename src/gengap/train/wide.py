"""P same-shaped sequential networks run as one *wide* network: the forward pass of a population
written out by hand, for the families whose layers allow it (``mlp``, ``cnn``, ``nin``, ``vgg``).

The minibatch is the same for every member, so until the first layer with weights the input is
*shared* (no member axis). Image activations are then held *wide*, ``(N, P*C, H, W)``: member
``p`` owns channels ``p*C .. p*C+C-1``, so per-channel layers (activations, pooling, batch norm
with the stacked statistics) apply to all members at once unchanged. The first convolution, on
the shared input, is ONE ordinary convolution with P times the output channels; later ones are
one grouped convolution (``groups=P``) in channels-last memory order, which this CPU's oneDNN
runs faster than P separate ones (unlike the plain-layout grouped convolution ``vmap`` makes).
Dense activations are held *stacked*, ``(P, N, F)`` (stored feature-major, see
:func:`_linear`), and dense layers are one batched matrix product (one plain product on the
shared input). Autograd differentiates it as usual. Each member computes what its own module
computes, up to float rounding (tested against the modules).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from gengap.models.mlp import OneHot

# Layers that act on each element alone: the same call serves every layout.
ELEMENTWISE = (nn.ReLU, nn.Tanh, nn.GELU, nn.Identity)
# Layers that act on each channel of an image alone: the same call serves all members.
PER_CHANNEL = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d)
SHARED, WIDE, STACKED = "shared", "wide", "stacked"  # activation layouts (see above)
Stacks = dict[str, torch.Tensor]
Layer = Callable[[torch.Tensor, str, Stacks, Stacks, bool, int], tuple[torch.Tensor, str]]


class WideForward:
    """The batched forward of a population of ``template``-shaped networks.

    Call it with stacked parameters and buffers (``name -> (P, ...)``, as
    :func:`torch.func.stack_module_state` gives), a minibatch shared by all members and whether
    to train (batch norm: batch statistics, running statistics updated in place); it returns
    logits of shape ``(P, N, classes)``. :meth:`supports` says whether a template can be run so.
    """

    def __init__(self, template: nn.Module) -> None:
        if not self.supports(template):
            raise ValueError(f"no wide form of {type(template).__name__}")
        self.layers = [_layer(str(i), m) for i, m in enumerate(template)]

    @staticmethod
    def supports(template: nn.Module) -> bool:
        """True for a sequential network of layers that have a wide form."""
        return isinstance(template, nn.Sequential) and all(
            _layer(str(i), m) is not None for i, m in enumerate(template)
        )

    def __call__(
        self, params: Stacks, buffers: Stacks, x: torch.Tensor, training: bool
    ) -> torch.Tensor:
        return self._run(params, buffers, x, training)

    @torch.no_grad()
    def widest_activation(self, params: Stacks, buffers: Stacks, x: torch.Tensor) -> int:
        """The most elements that any layer's output holds per example, all members together,
        from one eval-mode pass over ``x`` (statistics untouched)."""
        sizes: list[int] = []
        self._run(params, buffers, x, False, sizes)
        return max(sizes, default=0)

    def _run(self, params: Stacks, buffers: Stacks, x: torch.Tensor, training: bool,
             sizes: list[int] | None = None) -> torch.Tensor:
        """The forward pass; ``sizes``, if given, gets each layer's output elements per
        example."""
        p = next(iter(params.values())).shape[0]
        layout = SHARED
        for layer in self.layers:
            x, layout = layer(x, layout, params, buffers, training, p)
            if sizes is not None:
                sizes.append(x.numel() // x.shape[1 if layout == STACKED else 0])
        return _stacked(x, layout, p)


def _stacked(x: torch.Tensor, layout: str, p: int) -> torch.Tensor:
    """Features ``(N, F)`` shared or ``(N, P*F)`` wide as ``(P, N, F)``."""
    if layout == STACKED:
        return x
    if layout == SHARED:
        return x.flatten(1).expand(p, *x.shape[:1], -1)
    return x.reshape(x.shape[0], p, -1).transpose(0, 1)


def _wide(x: torch.Tensor, layout: str, p: int) -> torch.Tensor:
    """Any layout as wide ``(N, P*C, ...)``."""
    if layout == WIDE:
        return x
    if layout == SHARED:
        return x.repeat(1, p, *([1] * (x.dim() - 2)))
    return x.transpose(0, 1).reshape(x.shape[1], -1)


def _layer(name: str, module: nn.Module) -> Layer | None:
    """The wide form of one layer, or None. A layer maps ``(x, layout, params, buffers,
    training, P)`` to its output and that output's layout."""
    if isinstance(module, (*ELEMENTWISE, OneHot)):
        return lambda x, layout, params, buffers, training, p: (module(x), layout)
    if isinstance(module, nn.AdaptiveAvgPool2d) and module.output_size in (1, (1, 1)):
        return _global_average_pool
    if isinstance(module, PER_CHANNEL):
        return lambda x, layout, params, buffers, training, p: (
            module(x if layout == SHARED else _wide(x, layout, p)),
            SHARED if layout == SHARED else WIDE,
        )
    if isinstance(module, nn.Flatten) and module.start_dim == 1 and module.end_dim == -1:
        return lambda x, layout, params, buffers, training, p: (
            x.flatten(2) if layout == STACKED else x.flatten(1), layout
        )
    if (isinstance(module, nn.Conv2d) and module.groups == 1 and module.padding_mode == "zeros"
            and not isinstance(module.padding, str)):  # "same"/"valid": left to vmap
        return _conv(name, module)
    if isinstance(module, nn.Linear):
        return _linear(name, module)
    if isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d):
        return _batch_norm(name, module)
    return None


def _global_average_pool(x: torch.Tensor, layout: str, params: Stacks, buffers: Stacks,
                         training: bool, p: int) -> tuple[torch.Tensor, str]:
    """Global average pooling as a sum over the pixels, divided after: the sum's gradient is
    the pooled gradient broadcast (no tensor of its own), which the ReLU's backward before it
    reads in the activation's own channels-last order. The pooling module's gradient comes
    back as a tensor in NCHW order, read against the channels-last activation: 20x slower on
    16 Small CNN Zoo networks' last activation (measured)."""
    shared = layout == SHARED
    x = x if shared else _wide(x, layout, p)
    return x.sum((2, 3), keepdim=True) / (x.shape[2] * x.shape[3]), SHARED if shared else WIDE


def _conv(name: str, conv: nn.Conv2d) -> Layer:
    has_bias = conv.bias is not None

    def run(x: torch.Tensor, layout: str, params: Stacks, buffers: Stacks, training: bool,
            p: int) -> tuple[torch.Tensor, str]:
        weight = params[f"{name}.weight"]
        weight = weight.reshape(-1, *weight.shape[2:])  # (P*out, in, kh, kw)
        bias = params[f"{name}.bias"].reshape(-1) if has_bias else None
        if layout == SHARED:
            return _shared_conv(x, weight, bias, conv), WIDE
        if layout == STACKED:
            x = _wide(x, layout, p)
        # Channels-last: oneDNN's grouped convolution is fast in this order, slow in NCHW.
        x = x.contiguous(memory_format=torch.channels_last)
        y = F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation, groups=p)
        return y, WIDE

    return run


def _shared_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                 conv: nn.Conv2d) -> torch.Tensor:
    """Every member's filters on the shared input as one matrix product of its patches
    (im2col), whose result is already the channels-last wide activation. oneDNN runs a
    convolution of few input channels to P*C outputs several times slower (measured)."""
    n, _, h, w = x.shape
    kh, kw = conv.kernel_size
    out_h, out_w = (
        (size + 2 * pad - dil * (k - 1) - 1) // stride + 1
        for size, pad, dil, k, stride in zip(
            (h, w), conv.padding, conv.dilation, (kh, kw), conv.stride, strict=True
        )
    )
    patches = F.unfold(x, (kh, kw), conv.dilation, conv.padding, conv.stride)  # (N, in*k*k, L)
    rows = patches.transpose(1, 2).reshape(n * out_h * out_w, -1)
    # Row-major, so that autograd forms the kernel's gradient as rows^T @ grad: for the
    # transposed view it forms (grad^T @ rows)^T, measured 8x slower here (9 inner columns).
    kernel = weight.reshape(weight.shape[0], -1).t().contiguous()  # (in*k*k, P*out)
    if bias is not None:
        rows = torch.cat([rows, rows.new_ones(len(rows), 1)], 1)
        kernel = torch.cat([kernel, bias.unsqueeze(0)], 0)
    y = rows @ kernel
    return y.view(n, out_h, out_w, -1).permute(0, 3, 1, 2)  # (N, P*out, H, W), channels-last


def _linear(name: str, linear: nn.Linear) -> Layer:
    has_bias = linear.bias is not None

    def run(x: torch.Tensor, layout: str, params: Stacks, buffers: Stacks, training: bool,
            p: int) -> tuple[torch.Tensor, str]:
        # Computed feature-major, yᵀ = W xᵀ, and returned as the (P, N, out) view of that:
        # autograd then forms each weight's gradient in its own (out, in) layout, which the
        # flat gradient takes without a transposing copy (16 MLPs 40-100-100-10, batch 100:
        # a step 1.24x faster than y = x Wᵀ, measured in turns).
        weight = params[f"{name}.weight"]  # (P, out, in)
        bias = params[f"{name}.bias"] if has_bias else None
        if layout == SHARED:  # the same rows for every member: one product for all of them
            rows = weight.reshape(-1, weight.shape[2])  # (P*out, in)
            yt = rows @ x.t() if bias is None else torch.addmm(bias.reshape(-1, 1), rows, x.t())
            return yt.view(p, weight.shape[1], -1).transpose(1, 2), STACKED
        if layout == WIDE:
            x = x.reshape(x.shape[0], p, -1).transpose(0, 1)
        xt = x.transpose(1, 2)  # (P, in, N): contiguous when x came from a layer like this
        yt = torch.bmm(weight, xt) if bias is None else torch.baddbmm(bias.unsqueeze(2), weight, xt)
        return yt.transpose(1, 2), STACKED

    return run


def _batch_norm(name: str, bn: nn.BatchNorm1d | nn.BatchNorm2d) -> Layer:
    def run(x: torch.Tensor, layout: str, params: Stacks, buffers: Stacks, training: bool,
            p: int) -> tuple[torch.Tensor, str]:
        x = _wide(x, layout, p)  # channels of all members side by side
        weight = params[f"{name}.weight"].reshape(-1) if bn.affine else None
        bias = params[f"{name}.bias"].reshape(-1) if bn.affine else None
        mean = buffers.get(f"{name}.running_mean")
        var = buffers.get(f"{name}.running_var")
        factor = 0.0 if bn.momentum is None else bn.momentum
        if training and bn.track_running_stats:  # as nn.BatchNorm's forward does
            count = buffers[f"{name}.num_batches_tracked"]
            count.add_(1)
            if bn.momentum is None:  # cumulative average
                factor = 1.0 / float(count[0])
        y = F.batch_norm(
            x, mean.view(-1) if mean is not None else None,
            var.view(-1) if var is not None else None, weight, bias,
            training or mean is None, factor, bn.eps,
        )
        return y, WIDE

    return run
