"""Which steps of a forward pass are not piecewise linear.

Two curvature measures are exact only where the network is piecewise linear: relative flatness
after its feature layer (elsewhere it is the Gauss-Newton part of the Hessian) and the exact
Hessian trace (elsewhere the trace falls back to Hutchinson's estimator). A probe forward pass
finds the steps that break it: leaf modules outside :data:`PIECEWISE_LINEAR` (LayerNorm, tanh,
GELU, attention...), and torch functions called outside such modules, in a ``forward`` of the
model's own, that are smooth (``torch.tanh``, ``F.softmax``...) or multiply or divide two
activations (gating, attention scores).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

# Modules that are piecewise linear in their input in eval mode
PIECEWISE_LINEAR = (
    nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ReLU, nn.LeakyReLU, nn.ReLU6, nn.Hardtanh,
    nn.PReLU, nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d,
    nn.AvgPool3d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d, nn.BatchNorm1d,
    nn.BatchNorm2d, nn.BatchNorm3d, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d,
    nn.Flatten, nn.Identity,
)
SMOOTH_FUNCTIONS = frozenset({
    "tanh", "sigmoid", "gelu", "silu", "mish", "elu", "selu", "celu", "softplus", "softsign",
    "logsigmoid", "hardswish", "hardsigmoid", "softmax", "log_softmax", "softmin", "exp", "log",
    "log1p", "expm1", "sqrt", "rsqrt", "pow", "__pow__", "__rpow__", "square", "reciprocal",
    "erf", "sin", "cos", "layer_norm", "group_norm", "instance_norm", "rms_norm", "normalize",
    "scaled_dot_product_attention", "multi_head_attention_forward", "bilinear", "cosine_similarity",
    "norm", "vector_norm", "std", "var",
})
PRODUCTS = frozenset({
    "mul", "mul_", "__mul__", "__rmul__", "__imul__", "matmul", "__matmul__", "__rmatmul__",
    "mm", "bmm", "einsum", "outer", "addcmul", "baddbmm", "prod",
})
DIVISIONS = frozenset({"div", "div_", "__truediv__", "__itruediv__", "true_divide"})


class _Recorder(TorchFunctionMode):
    """Notes each smooth function and each product of two activations called outside leaf
    modules, in order, into ``events``."""

    def __init__(self, events: list[tuple[str, Any]], inside: list[nn.Module]) -> None:
        super().__init__()
        self.events, self.inside = events, inside

    def __torch_function__(self, func: Any, types: Any, args: tuple = (),
                           kwargs: dict | None = None) -> Any:
        if not self.inside:  # a leaf module's own calls are judged by its type
            name = getattr(func, "__name__", "")
            if name in SMOOTH_FUNCTIONS:
                self.events.append(("function", f"{name}()"))
            elif name in PRODUCTS and _activations(args) >= 2:
                self.events.append(("function", f"{name}() of two activations"))
            elif name in DIVISIONS and len(args) > 1 and _activations(args[1:]) >= 1:
                self.events.append(("function", f"{name}() by an activation"))
        return func(*args, **(kwargs or {}))


def _activations(args: tuple) -> int:
    tensors = [a for a in args if isinstance(a, torch.Tensor)]
    return sum(t.requires_grad for t in tensors)


@torch.enable_grad()
def smooth_steps(model: nn.Module, probe: torch.Tensor,
                 after: nn.Module | None = None) -> list[str]:
    """The steps that are not piecewise linear in a forward pass of ``model`` (eval mode) on
    ``probe``: names of leaf modules, and functions as ``"tanh()"``; with ``after``, only those
    that run after its last call. Sorted, each once."""
    events: list[tuple[str, Any]] = []
    inside: list[nn.Module] = []
    leaves = [(n, m) for n, m in model.named_modules() if not list(m.children())]
    def entered(module: nn.Module, _inputs: Any) -> None:
        inside.append(module)

    def left(module: nn.Module, _inputs: Any, _output: Any, name: str) -> None:
        inside.pop()
        events.append(("module", (name, module)))

    handles = []
    for name, module in leaves:
        handles.append(module.register_forward_pre_hook(entered))
        handles.append(module.register_forward_hook(partial(left, name=name)))
    if probe.is_floating_point():  # activations are what depends on the input
        probe = probe.detach().clone().requires_grad_(True)
    try:
        with _Recorder(events, inside):
            model.eval()(probe)
    finally:
        for h in handles:
            h.remove()
    if after is not None:
        runs = [i for i, (kind, what) in enumerate(events) if kind == "module" and what[1] is after]
        events = events[runs[-1] + 1 :] if runs else []
    found = {what[0] for kind, what in events
             if kind == "module" and not isinstance(what[1], PIECEWISE_LINEAR)}
    found |= {what for kind, what in events if kind == "function"}
    return sorted(found)
