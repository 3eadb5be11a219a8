"""The layers that weight-based measures see: Linear and Conv weights, with BatchNorm folded
into the layer whose output it normalizes."""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn

from gengap.errors import GengapError

WEIGHT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


FOLD_RTOL = 1e-4  # the folded network's outputs on the example, relative to their largest


@torch.no_grad()
def fold_batchnorm(model: nn.Module, example: torch.Tensor | None = None) -> nn.Module:
    """A copy of ``model`` (in eval mode) with each BatchNorm folded into the Linear or Conv
    layer whose output it normalizes, and replaced by the identity.

    In eval mode BN is the affine map ``x -> (x - mean) * g + beta`` with
    ``g = gamma / sqrt(var + eps)``; folding multiplies the layer's output channel ``c`` by
    ``g[c]`` and sets its bias to ``(b - mean) * g + beta``. Which layer feeds which BN is read
    from the dataflow of one forward pass on ``example`` (an input batch; a BN is folded only
    where its input is a layer's output tensor itself), not from the order the modules were
    registered in, which in a residual network puts a block's first BN after the previous
    block's last conv although the sum of the two branches lies between them. The folded copy
    is then checked to compute the model's function on ``example`` (to ``FOLD_RTOL``); a fold
    that would change it (the layer's output also used elsewhere, an in-place operation on it)
    is left out, so the result always computes what ``model`` does. A BN that nothing can be
    folded into (a pre-activation block's, say) stays in place. ``example`` is needed only when
    the model has a BatchNorm.
    """
    return fold_batchnorm_with_scales(model, example)[0]


@torch.no_grad()
def fold_batchnorm_with_scales(model: nn.Module, example: torch.Tensor | None = None
                               ) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """:func:`fold_batchnorm`, and for each layer a BatchNorm was folded into, by name, the
    factor ``g`` its weight was multiplied by, shaped to broadcast over that weight (the
    folded layer with weight ``g·W`` computes what ``W`` followed by the BatchNorm did)."""
    model = copy.deepcopy(model).eval()
    if not any(isinstance(m, BATCH_NORMS) for m in model.modules()):
        return model, {}
    if example is None:
        raise GengapError("folding BatchNorm needs an example input (the input shape or data)")
    pairs = _feeding_layers(model, example)
    expected = model(example)
    folded, scales = _folded(model, pairs)
    if not _same_function(expected, folded(example)):
        # one of the folds changes the function: keep the ones that do not, alone
        pairs = [pair for pair in pairs
                 if _same_function(expected, _folded(model, [pair])[0](example))]
        folded, scales = _folded(model, pairs)
        if not _same_function(expected, folded(example)):
            folded, scales = model, {}
    return folded, scales


def _feeding_layers(model: nn.Module, example: torch.Tensor) -> list[tuple[str, str]]:
    """(layer name, BatchNorm name) where, in a forward pass on ``example``, the BatchNorm's
    input is the layer's output tensor and the BatchNorm runs once."""
    outputs: dict[int, tuple[str, torch.Tensor]] = {}  # tensors kept: their ids stay unique
    fed: dict[str, list[str | None]] = {}

    def after_layer(name: str) -> Callable[..., None]:
        def hook(_m: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
            outputs[id(output)] = (name, output)
        return hook

    def before_norm(name: str) -> Callable[..., None]:
        def hook(_m: nn.Module, inputs: tuple) -> None:
            hit = outputs.get(id(inputs[0]))
            fed.setdefault(name, []).append(hit[0] if hit and hit[1] is inputs[0] else None)
        return hook

    layers = dict(model.named_modules())
    handles = [m.register_forward_hook(after_layer(n)) for n, m in layers.items()
               if isinstance(m, WEIGHT_LAYERS)]
    handles += [m.register_forward_pre_hook(before_norm(n)) for n, m in layers.items()
                if isinstance(m, BATCH_NORMS)]
    try:
        model(example)
    finally:
        for handle in handles:
            handle.remove()
    pairs = []
    for norm, sources in fed.items():
        source, bn = sources[0], layers[norm]
        if (len(sources) == 1 and source is not None and bn.track_running_stats
                and layers[source].weight.shape[0] == bn.num_features):
            pairs.append((source, norm))
    folded_into = [layer for layer, _ in pairs]
    return [pair for pair in pairs if folded_into.count(pair[0]) == 1]


def _folded(model: nn.Module, pairs: list[tuple[str, str]]
            ) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    folded = copy.deepcopy(model)
    scales = {}
    for layer, norm in pairs:
        scales[layer] = _fold_into(folded.get_submodule(layer), folded.get_submodule(norm))
        _replace(folded, norm, nn.Identity())
    return folded, scales


def _same_function(expected: torch.Tensor, got: torch.Tensor) -> bool:
    if expected.shape != got.shape:
        return False
    err = (expected.double() - got.double()).abs().max()
    return bool(err <= FOLD_RTOL * expected.double().abs().max())


def _fold_into(layer: nn.Module, bn: nn.Module) -> torch.Tensor:
    gamma = bn.weight if bn.affine else torch.ones_like(bn.running_var)
    beta = bn.bias if bn.affine else torch.zeros_like(bn.running_mean)
    scale = gamma / torch.sqrt(bn.running_var + bn.eps)
    shape = (-1,) + (1,) * (layer.weight.dim() - 1)
    layer.weight.mul_(scale.reshape(shape))
    bias = layer.bias if layer.bias is not None else torch.zeros_like(bn.running_mean)
    new_bias = (bias - bn.running_mean) * scale + beta
    if layer.bias is None:
        layer.bias = nn.Parameter(new_bias)
    else:
        layer.bias.copy_(new_bias)
    return scale.detach().reshape(shape).clone()


def _replace(root: nn.Module, dotted: str, new: nn.Module) -> None:
    parent_name, _, child = dotted.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, new)


def weight_matrices(model: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """``(name, W)`` for every Linear and Conv layer, conv kernels reshaped to
    ``(c_out, c_in * k...)``, in registration order, detached, in float64."""
    return [
        (name, module.weight.detach().reshape(module.weight.shape[0], -1).double())
        for name, module in model.named_modules()
        if isinstance(module, WEIGHT_LAYERS)
    ]


def forward_copy(model: nn.Module, example: torch.Tensor
                 ) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """A copy of ``model`` for forward passes (the same function up to float rounding), and
    the factors of :func:`fold_batchnorm_with_scales` (``example``: an input batch on the
    model's device): BatchNorm folded into the layers that feed it (one operation less per
    layer), and on the CPU its tensors in channels-last order, where oneDNN's convolutions run
    faster (the bench NiN: 1.25-1.7x)."""
    work, scales = fold_batchnorm_with_scales(model, example)
    if example.device.type == "cpu":
        work = work.to(memory_format=torch.channels_last)
    return work, scales
