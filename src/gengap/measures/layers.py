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


Fold = tuple[str, str]  # (name of a Linear/Conv layer, name of the BatchNorm it feeds)
FOLD_RTOL = 1e-9  # a fold's check in float64: outputs relative to their largest (else 100 ε)


@torch.no_grad()
def fold_batchnorm(model: nn.Module, example: torch.Tensor | None = None,
                   folds: list[Fold] | None = None) -> nn.Module:
    """A copy of ``model`` (in eval mode) with each BatchNorm folded into the Linear or Conv
    layer whose output it normalizes, and replaced by the identity.

    In eval mode BN is the affine map ``x -> (x - mean) * g + beta`` with
    ``g = gamma / sqrt(var + eps)``; folding multiplies the layer's output channel ``c`` by
    ``g[c]`` and sets its bias to ``(b - mean) * g + beta``: the same function up to rounding.
    Which layer feeds which BN is :func:`batchnorm_folds` of ``model`` on ``example`` (an
    input batch), unless ``folds`` gives them (to fold a network's initial weights as its final
    ones). ``example`` is needed only when the model has a BatchNorm.
    """
    return fold_batchnorm_with_scales(model, example, folds)[0]


@torch.no_grad()
def fold_batchnorm_with_scales(model: nn.Module, example: torch.Tensor | None = None,
                               folds: list[Fold] | None = None
                               ) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """:func:`fold_batchnorm`, and for each layer a BatchNorm was folded into, by name, the
    factor ``g`` its weight was multiplied by, shaped to broadcast over that weight (the
    folded layer with weight ``g·W`` computes what ``W`` followed by the BatchNorm did)."""
    if folds is None:
        folds = batchnorm_folds(model, example)
    return _folded(copy.deepcopy(model).eval(), folds, copy_first=False)


@torch.no_grad()
def batchnorm_folds(model: nn.Module, example: torch.Tensor | None) -> list[Fold]:
    """The (layer, BatchNorm) pairs that folding merges. Read from the dataflow of a forward
    pass on ``example``: a BN is paired with the layer whose output tensor is its input, not
    with the layer registered before it, which in a residual network is the previous block's
    last conv although the sum of two branches lies between them. Each pair is then checked on
    a float64 copy of the model whose BatchNorm statistics and affine parameters are drawn at
    random (a fresh BN is nearly the identity, under which a wrong fold goes unseen): a fold
    that changes that copy's outputs (the layer's output also used elsewhere, an in-place
    operation on it) is left out. So the pairs depend on the architecture only: a network's
    initial and final weights fold alike. A BN that nothing can be folded into (a
    pre-activation block's, say) stays in place. A model without BatchNorm needs no example;
    one whose output is not a tensor gets no folds."""
    if not any(isinstance(m, BATCH_NORMS) for m in model.modules()):
        return []
    if example is None:
        raise GengapError("folding BatchNorm needs an example input (the input shape or data)")
    try:
        probe = _randomized_batchnorm(model, torch.float64)
        example_64 = example.double() if example.is_floating_point() else example
        expected = probe(example_64)
        example, rtol = example_64, FOLD_RTOL
    except (RuntimeError, TypeError):  # a model that does not run in float64: its own dtype
        probe = _randomized_batchnorm(model, None)
        expected = probe(example)
        rtol = 100 * torch.finfo(expected.dtype).eps if isinstance(expected, torch.Tensor) else 0
    if not isinstance(expected, torch.Tensor):
        return []

    def same(pairs: list[Fold]) -> bool:
        got = _folded(probe, pairs)[0](example)
        return (isinstance(got, torch.Tensor) and got.shape == expected.shape
                and bool((expected - got).abs().max() <= rtol * expected.abs().max()))

    pairs = _feeding_layers(probe, example)
    if same(pairs):
        return pairs
    # one of the folds changes the function: keep the ones that do not, alone and together
    pairs = [pair for pair in pairs if same([pair])]
    return pairs if same(pairs) else []


def _randomized_batchnorm(model: nn.Module, dtype: torch.dtype | None) -> nn.Module:
    """A copy of ``model`` in eval mode (in ``dtype`` if given), its BatchNorms' running
    statistics and affine parameters drawn at random (seeded)."""
    probe = copy.deepcopy(model).eval()
    if dtype is not None:
        probe = probe.to(dtype)
    gen = torch.Generator().manual_seed(0)
    for m in probe.modules():
        if isinstance(m, BATCH_NORMS) and m.track_running_stats:
            n = m.num_features

            def draw(low: float, high: float, like: torch.Tensor, n: int = n) -> torch.Tensor:
                return (low + (high - low) * torch.rand(n, generator=gen, dtype=torch.float64)
                        ).to(like)

            m.running_mean.copy_(draw(-1, 1, m.running_mean))
            m.running_var.copy_(draw(0.5, 2, m.running_var))
            if m.affine:
                m.weight.copy_(draw(0.5, 2, m.weight))
                m.bias.copy_(draw(-1, 1, m.bias))
    return probe


def _feeding_layers(model: nn.Module, example: torch.Tensor) -> list[Fold]:
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


def _folded(model: nn.Module, pairs: list[Fold], copy_first: bool = True
            ) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    folded = copy.deepcopy(model) if copy_first else model
    scales = {}
    for layer, norm in pairs:
        scales[layer] = _fold_into(folded.get_submodule(layer), folded.get_submodule(norm))
        replace_module(folded, norm, nn.Identity())
    return folded, scales


def batchnorm_affine(bn: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """(a, c), per channel, such that the eval-mode BatchNorm ``bn`` computes a·x + c."""
    gamma = bn.weight if bn.affine else torch.ones_like(bn.running_var)
    beta = bn.bias if bn.affine else torch.zeros_like(bn.running_mean)
    scale = gamma / torch.sqrt(bn.running_var + bn.eps)
    return scale, beta - bn.running_mean * scale


def _fold_into(layer: nn.Module, bn: nn.Module) -> torch.Tensor:
    scale, shift = batchnorm_affine(bn)
    shape = (-1,) + (1,) * (layer.weight.dim() - 1)
    layer.weight.mul_(scale.reshape(shape))
    bias = layer.bias if layer.bias is not None else torch.zeros_like(bn.running_mean)
    new_bias = bias * scale + shift
    if layer.bias is None:
        layer.bias = nn.Parameter(new_bias)
    else:
        layer.bias.copy_(new_bias)
    return scale.detach().reshape(shape).clone()


def replace_module(root: nn.Module, dotted: str, new: nn.Module) -> None:
    """Put ``new`` where ``root``'s submodule named ``dotted`` is."""
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


def forward_copy(model: nn.Module, example: torch.Tensor | None,
                 folds: list[Fold] | None = None) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """A copy of ``model`` for forward passes (the same function up to float rounding), and
    the factors of :func:`fold_batchnorm_with_scales` (``example``, ``folds``: as there):
    BatchNorm folded into the layers that feed it (one operation less per layer), and on the
    CPU its 2-D convolution kernels in channels-last order, where oneDNN's convolutions run
    faster (the bench NiN: 1.25-1.7x)."""
    work, scales = fold_batchnorm_with_scales(model, example, folds)
    for p in work.parameters():
        if p.dim() == 4 and p.device.type == "cpu":
            p.data = p.data.contiguous(memory_format=torch.channels_last)
    return work, scales
