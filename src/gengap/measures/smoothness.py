"""Which steps of a forward pass are not piecewise linear.

Two curvature measures are exact only where the network is piecewise linear: relative flatness
after its feature layer (elsewhere it is the Gauss-Newton part of the Hessian) and the exact
Hessian trace (which also checks numerically; elsewhere the trace falls back to Hutchinson's
estimator). A probe forward pass names the steps that break it: torch functions that are smooth
(``torch.tanh``, ``F.softmax``, ``x.exp_()``...) or multiply or divide two tensors that depend
on the input or the parameters (gating, attention scores, a weight standardized by its norm).
Calls inside a leaf module of a known piecewise-linear type (:data:`PIECEWISE_LINEAR`) are not
looked at; a call inside any other leaf module is reported by the module's name.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
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
# Function names (in-place and special.* forms are reduced to these) that are smooth
SMOOTH_FUNCTIONS = frozenset({
    "tanh", "sigmoid", "expit", "gelu", "silu", "mish", "elu", "selu", "celu", "softplus",
    "softsign", "logsigmoid", "hardswish", "hardsigmoid", "glu", "softmax", "log_softmax",
    "softmin", "gumbel_softmax", "logsumexp", "logaddexp", "exp", "exp2", "expm1", "log", "log2",
    "log10", "log1p", "logit", "xlogy", "sqrt", "rsqrt", "pow", "float_power", "square",
    "reciprocal", "prod", "erf", "erfc", "erfinv", "sin", "cos", "tan", "asin", "acos", "atan",
    "atan2", "sinh", "cosh", "asinh", "acosh", "atanh", "sinc", "lgamma", "digamma",
    "layer_norm", "group_norm", "instance_norm", "rms_norm", "local_response_norm", "normalize",
    "norm", "vector_norm", "matrix_norm", "std", "var", "std_mean", "var_mean", "cdist", "pdist",
    "dist", "pairwise_distance", "cosine_similarity", "bilinear", "scaled_dot_product_attention",
    "multi_head_attention_forward", "tanhshrink", "smooth_l1_loss", "huber_loss", "mse_loss",
    "kl_div", "binary_cross_entropy", "binary_cross_entropy_with_logits", "cross_entropy",
    "nll_loss", "poisson_nll_loss", "gaussian_nll_loss", "soft_margin_loss",
})
# Linear in each operand: curved only when two operands vary
PRODUCTS = frozenset({
    "mul", "multiply", "matmul", "mm", "bmm", "einsum", "outer", "ger", "addcmul", "addmm",
    "addbmm", "baddbmm", "addmv", "addr", "mv", "dot", "vdot", "inner", "kron", "tensordot",
    "linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
})
DIVISIONS = frozenset({"div", "divide", "true_divide", "truediv", "addcdiv"})


def _base_name(func: Any) -> tuple[str, bool]:
    """The function's name without in-place, dunder and ``special_`` decoration, and whether it
    is a reflected operator (``1 / x``: the tensor is the right-hand operand)."""
    name = getattr(func, "__name__", "")
    reflected = False
    if name.startswith("__") and name.endswith("__"):
        name = name.strip("_")
        if name[:1] in "ri" and name[1:] in PRODUCTS | DIVISIONS | {"pow"}:
            reflected, name = name[0] == "r", name[1:]
    name = name.rstrip("_").removeprefix("special_")
    return name, reflected


def _curved_call(func: Any, args: tuple) -> str | None:
    """How this call breaks piecewise linearity, or None."""
    name, reflected = _base_name(func)
    if name in SMOOTH_FUNCTIONS and _varying(args) >= 1:
        return f"{name}()"
    if name in PRODUCTS and any(isinstance(a, nn.Parameter) for a in args):
        return f"{name}() of a parameter outside its layer"  # linear, but not where looked for
    if name in PRODUCTS and _varying(args) >= 2:
        return f"{name}() of two varying tensors"
    if name in DIVISIONS:  # the divisor: args[0] of a reflected `1 / x`, else what follows
        divisors = args[:1] if reflected else args[1:]
        if _varying(divisors) >= 1:
            return f"{name}() by a varying tensor"
    return None


class _Recorder(TorchFunctionMode):
    """Notes, in order into ``events``, each call that breaks piecewise linearity or uses a
    parameter's values outside its layer: by function outside leaf modules, by module name
    inside a leaf module of an unknown type."""

    def __init__(self, events: list[tuple[str, Any]], inside: list[tuple[str, nn.Module]]
                 ) -> None:
        super().__init__()
        self.events, self.inside = events, inside

    def __torch_function__(self, func: Any, types: Any, args: tuple = (),
                           kwargs: dict | None = None) -> Any:
        module = self.inside[-1] if self.inside else None
        out = func(*args, **(kwargs or {}))
        if module is None or not isinstance(module[1], PIECEWISE_LINEAR):
            why = _curved_call(func, args)
            if why is None and isinstance(out, torch.Tensor) and any(
                    isinstance(a, nn.Parameter) for a in args):
                # its values used where no layer's gradient construction looks
                why = f"{_base_name(func)[0]}() of a parameter outside its layer"
            if why is not None:
                # a layer by its name and type: "2 (GELU)", not a bare "2" of a Sequential
                self.events.append(("step", why if module is None else
                                    f"{module[0]} ({type(module[1]).__name__})"))
        return out


def _varying(args: tuple) -> int:
    """How many tensor arguments (or tensors in list arguments: ``einsum(eq, [a, b])``)
    depend on the parameters (require grad, while :func:`watched` has every parameter do so)."""
    flat = [t for a in args for t in (a if isinstance(a, (list, tuple)) else (a,))]
    return sum(isinstance(t, torch.Tensor) and t.requires_grad for t in flat)


@contextmanager
def watched(model: nn.Module) -> Iterator[list[tuple[str, Any]]]:
    """Within the block, ``model``'s forward passes note in the yielded list, in order,
    ``("step", name)`` for each call that is not piecewise linear in the parameters (a function
    as ``"tanh()"``; a leaf layer of another type than :data:`PIECEWISE_LINEAR` by its name
    and type, ``"3 (Tanh)"``) and
    ``("ran", module)`` after each leaf layer's call. Every parameter requires grad meanwhile,
    so that what depends on them is told from what depends on the input alone (smooth
    preprocessing of the input keeps a network piecewise linear in its parameters)."""
    events: list[tuple[str, Any]] = []
    inside: list[tuple[str, nn.Module]] = []

    def entered(module: nn.Module, _inputs: Any, name: str) -> None:
        inside.append((name, module))

    def left(module: nn.Module, _inputs: Any, _output: Any) -> None:
        inside.pop()
        events.append(("ran", module))

    handles = []
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        for name, module in model.named_modules():
            if not list(module.children()):
                handles.append(module.register_forward_pre_hook(partial(entered, name=name)))
                handles.append(module.register_forward_hook(left))
        for p, _ in flags:
            p.requires_grad_(True)
        with torch.enable_grad(), _Recorder(events, inside):
            yield events
    finally:
        for h in handles:
            h.remove()
        for p, flag in flags:
            p.requires_grad_(flag)


def smooth_steps(model: nn.Module, probe: torch.Tensor,
                 after: nn.Module | None = None) -> list[str]:
    """The steps that are not piecewise linear in the parameters in a forward pass of ``model``
    (eval mode) on ``probe`` (see :func:`watched`); with ``after``, only those that run after
    its last call. Sorted, each once."""
    with watched(model.eval()) as events:
        model(probe.detach().clone())  # a copy: the model may work in place on its input
    if after is not None:
        runs = [i for i, (kind, what) in enumerate(events) if kind == "ran" and what is after]
        events = events[runs[-1] + 1 :] if runs else []
    return sorted({what for kind, what in events if kind == "step"})
