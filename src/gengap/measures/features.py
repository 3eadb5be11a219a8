"""Intermediate features by forward hooks: the penultimate features (the input of the last
Linear/Conv layer) and early features (after the first layer's activation), for the
representation and flatness measures."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import nn

from gengap.errors import GengapError
from gengap.measures.layers import BATCH_NORMS, WEIGHT_LAYERS

if TYPE_CHECKING:
    from gengap.measures.relative_flatness import LayerCurvature

# modules that give back their input in eval mode: never where features are read
PASSED_ON = (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)


def weight_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Linear and Conv layers in registration order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, WEIGHT_LAYERS)]


@torch.no_grad()
def calls(model: nn.Module, example: torch.Tensor,
          modules: list[tuple[str, nn.Module]]) -> list[tuple[str, nn.Module]]:
    """Each call of one of ``modules`` in a forward pass on ``example`` (eval mode), in order,
    repeats included."""
    order: list[tuple[str, nn.Module]] = []
    hooks = [m.register_forward_hook(lambda _m, _i, _o, name=name, m=m: order.append((name, m)))
             for name, m in modules]
    try:
        model.eval()(example)
    finally:
        for h in hooks:
            h.remove()
    return order


def weight_layers_as_run(model: nn.Module, example: torch.Tensor) -> list[tuple[str, nn.Module]]:
    """The Linear and Conv layers that a forward pass on ``example`` calls, ordered by their
    last call. Running order is what matters where it differs from registration order: a
    residual block's shortcut may be registered after its last convolution but runs before
    it, and a model may register its head first."""
    order = calls(model, example, weight_layers(model))
    last_run = {name: i for i, (name, _) in enumerate(order)}
    return sorted(dict(order).items(), key=lambda item: last_run[item[0]])


def last_layer(model: nn.Module, example: torch.Tensor | None = None) -> nn.Module:
    """The last Linear/Conv layer: the classifier head whose input are the penultimate
    features; the last to run on ``example`` inputs, or without them the last registered. A
    conv head must be 1x1 (then global average pooling makes it linear)."""
    layers = weight_layers(model) if example is None else weight_layers_as_run(model, example)
    if not layers:
        raise GengapError("the model has no Linear or Conv layer")
    head = layers[-1][1]
    if not isinstance(head, nn.Linear) and any(k != 1 for k in head.kernel_size):
        raise GengapError(
            f"the last layer {layers[-1][0]!r} is a {head.kernel_size} convolution; the "
            "penultimate-feature measures need a Linear or 1x1-conv head"
        )
    return head


def head_matrix(model: nn.Module, example: torch.Tensor | None = None) -> torch.Tensor:
    """The head's weight (:func:`last_layer`) as a (classes, features) matrix."""
    w = last_layer(model, example).weight.detach()
    return w.reshape(w.shape[0], -1)


def early_module(model: nn.Module, example: torch.Tensor) -> nn.Module:
    """Where early features are read: the first module after the first weight layer that is
    neither BatchNorm, a module that passes its input on (Identity, Dropout: an optional
    BatchNorm switched off is often an Identity) nor a weight layer (its activation), else the
    first weight layer; in the order a forward pass on ``example`` calls them (a registered
    layer whose module is never called, as a transformer's attention output projection, is
    passed over)."""
    leaves = [(n, m) for n, m in model.named_modules() if len(list(m.children())) == 0]
    modules = list(dict.fromkeys(m for _, m in calls(model, example, leaves)))  # first calls
    for i, m in enumerate(modules):
        if isinstance(m, WEIGHT_LAYERS):
            for nxt in modules[i + 1 :]:
                if isinstance(nxt, (*BATCH_NORMS, *PASSED_ON)):
                    continue
                return m if isinstance(nxt, WEIGHT_LAYERS) else nxt
            return m
    raise GengapError("the model has no Linear or Conv layer")


def capture(
    model: nn.Module,
    module: nn.Module,
    x: torch.Tensor,
    device: torch.device,
    batch_size: int,
    which: str = "output",
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    alongside: LayerCurvature | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(features, logits) of ``x``: the input or output of ``module`` (optionally transformed
    per batch, to keep memory small) and the model's outputs, in one pass without gradients.
    ``alongside``: a layer of ``model`` whose curvature takes every batch's logits in the same
    pass (then only the layers after that layer build a graph)."""
    grabbed: list[torch.Tensor] = []

    def hook(_m: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        t = (inputs[0] if which == "input" else output).detach()
        grabbed.append(transform(t) if transform else t)

    handle = module.register_forward_hook(hook)
    logits = []
    try:
        with torch.no_grad() if alongside is None else alongside.attached(model):
            for i in range(0, len(x), batch_size):
                out = model(x[i : i + batch_size].to(device))
                if alongside is not None:
                    alongside.add(out)
                logits.append(out.detach())
    finally:
        handle.remove()
    return torch.cat(grabbed), torch.cat(logits)


def penultimate_features(
    model: nn.Module, x: torch.Tensor, device: torch.device, batch_size: int = 1024,
    alongside: LayerCurvature | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(φ, logits): φ the head's input, flattened (spatial mean for a 1x1-conv head), float64;
    the head is the last Linear/Conv layer to run. ``alongside``: as :func:`capture`."""
    head = last_layer(model, x[:1].to(device))

    def flat(t: torch.Tensor) -> torch.Tensor:
        return (t.flatten(2).mean(-1) if t.dim() > 2 else t).double()

    return capture(model, head, x, device, batch_size, "input", flat, alongside)


def early_features(
    model: nn.Module, x: torch.Tensor, device: torch.device, batch_size: int = 1024
) -> torch.Tensor:
    """Early features as Natekar & Sharma read them: after the first layer (and its
    activation), max-pooled 4x4 (stride 4) when spatial, flattened, float64."""

    def pool(t: torch.Tensor) -> torch.Tensor:
        if t.dim() == 4:
            k = min(4, t.shape[-2], t.shape[-1])
            t = torch.nn.functional.max_pool2d(t, k)
        return t.flatten(1).double()

    layer = early_module(model, x[:1].to(device))
    feats, _ = capture(model, layer, x, device, batch_size, "output", pool)
    return feats
