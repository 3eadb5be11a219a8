"""What :class:`~gengap.measures.context.MeasureContext` checks of its arguments before any
measure runs: a one-line :class:`GengapError` naming the problem, where a measure would
otherwise fail deep inside torch or, worse, return a plausible but wrong number (labels of
shape (N, 1) turned σ′ into NaN; 250 labels for 300 inputs still gave a mixup accuracy)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from gengap.errors import GengapError
from gengap.measures.layers import WEIGHT_LAYERS
from gengap.models.weight_check import weight_problem

# Wrappers that run one module: measured as that module (torch.func cannot see through them).
WRAPPERS = (nn.DataParallel, nn.parallel.DistributedDataParallel)


def unwrapped(model: nn.Module | None) -> nn.Module | None:
    """The module a data-parallel wrapper runs, else ``model`` itself."""
    return model.module if isinstance(model, WRAPPERS) else model


def model_dtype(model: nn.Module) -> torch.dtype | None:
    """The dtype the model computes in: its first Linear/Conv weight's, else its first float
    parameter's (a float64 temperature before float32 layers does not decide it)."""
    weights = (m.weight for m in model.modules() if isinstance(m, WEIGHT_LAYERS))
    floats = (p for p in model.parameters() if p.is_floating_point())
    first = next(weights, None)
    if first is None:
        first = next(floats, None)
    return None if first is None else first.dtype


def weights_problem(model: nn.Module) -> str | None:
    """The first problem of the model's parameters and buffers (NaN or inf in a weight or a
    BatchNorm statistic: a diverged run), in words, or None (:func:`weight_problem`)."""
    return weight_problem(model.state_dict(), model)


def check_finite_weights(model: nn.Module, what: str) -> None:
    """Refuse NaN or infinite weights or statistics: every norm and search would be NaN or
    fail in a linear-algebra routine."""
    problem = weights_problem(model)
    if problem is not None:
        raise GengapError(f"{what}: {problem} (a diverged run?)")


def check_fixed_function(model: nn.Module) -> None:
    """Refuse a BatchNorm without running statistics: it normalizes by each batch even in eval
    mode, so the outputs (and every data measure) would depend on how examples are batched."""
    for name, m in model.named_modules():
        if isinstance(m, _BatchNorm) and m.running_mean is None:
            raise GengapError(f"the model's module {name!r} is a BatchNorm without running "
                              "statistics "
                              "(track_running_stats=False): its outputs depend on the batch, so "
                              "there is no one function to measure")


def check_same_architecture(model: nn.Module, other: nn.Module, what: str) -> None:
    """Refuse ``other`` (the initial or second model) unless its parameters have the model's
    names and shapes."""
    mine = {n: tuple(p.shape) for n, p in model.named_parameters()}
    theirs = {n: tuple(p.shape) for n, p in other.named_parameters()}
    for name in [*mine, *theirs]:
        if mine.get(name) != theirs.get(name):
            has = f"has {name} of shape {theirs[name]}" if name in theirs else f"lacks {name}"
            own = f"the model's is {mine[name]}" if name in mine else "the model has none"
            raise GengapError(f"{what} is not the model's architecture: it {has}; {own}")


def as_tensor(value: object, what: str) -> torch.Tensor | None:
    """``value`` as a tensor on the CPU: a tensor as it is (copied there from a GPU), a numpy
    array (or anything numpy reads as an array of numbers) converted; None stays None. A
    one-line error for anything else. The measures keep data on the host and move batches,
    so data handed over on a GPU would meet tensors they make on the host."""
    if value is None or isinstance(value, torch.Tensor):
        return None if value is None else value.cpu()
    try:
        return torch.as_tensor(np.ascontiguousarray(value))  # torch takes no negative strides
    except (TypeError, ValueError, RuntimeError) as err:
        raise GengapError(f"{what}: not an array of numbers ({type(value).__name__}: "
                          f"{str(err).splitlines()[0]})") from None


def checked_labels(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``y`` as int64 class indices once it has one per example of ``x``."""
    if len(x) != len(y):
        raise GengapError(f"x_train has {len(x)} examples but y_train {len(y)} labels")
    if len(y) == 0:
        raise GengapError("the training set (x_train, y_train) is empty")
    if y.dim() != 1:
        raise GengapError(f"y_train must hold one class index per example, shape (N,), not "
                          f"{tuple(y.shape)} (flatten it)")
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise GengapError(f"y_train must hold integer class indices, not {y.dtype}")
    return y.long()


def checked_inputs(x: torch.Tensor, model: nn.Module, what: str) -> torch.Tensor:
    """``x`` in the model's floating dtype (float inputs only: token ids stay integers), once
    every value is finite."""
    dtype = model_dtype(model)
    if x.is_floating_point():
        if not bool(torch.isfinite(x).all()):
            row = int((~torch.isfinite(x.reshape(len(x), -1))).any(1).nonzero()[0])
            raise GengapError(f"{what}: example {row} holds NaN or inf")
        if dtype is not None and x.dtype != dtype:
            x = x.to(dtype)
    return x


def check_heldout(x_heldout: torch.Tensor, x_train: torch.Tensor | None) -> None:
    """Refuse empty held-out inputs, or ones shaped unlike the training inputs."""
    if len(x_heldout) == 0:
        raise GengapError("x_heldout is empty")
    if x_train is not None and x_heldout.shape[1:] != x_train.shape[1:]:
        raise GengapError(f"x_heldout's inputs have shape {tuple(x_heldout.shape[1:])}, the "
                          f"training inputs {tuple(x_train.shape[1:])}")


@torch.no_grad()
def check_outputs(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None,
                  device: torch.device) -> None:
    """One forward pass of two examples: the model must take ``x``'s inputs and return class
    logits (N, classes ≥ 2), every label must be one of those classes, and the model must
    leave its input as it was (measures hand it slices of ``x``, which an in-place forward
    would change for every measure after it)."""
    probe = x[:2].to(device, copy=True)
    try:
        out = model(probe)
    except Exception as err:  # the user's network refusing the data: say which data
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise GengapError(f"the model cannot take x_train's inputs of shape "
                          f"{tuple(x.shape[1:])} and dtype {str(x.dtype).removeprefix('torch.')}"
                          f": {first}") from None
    if not torch.equal(probe, x[:2].to(device)):
        raise GengapError("the model changes its input in place (its forward wrote into the "
                          "batch it was given), which would change x_train for every measure "
                          "after it: let the forward work on a copy (x = x.clone() first)")
    if not isinstance(out, torch.Tensor):
        raise GengapError(f"the model must return one tensor of class logits, not a "
                          f"{type(out).__name__}")
    if out.dim() != 2 or out.shape[1] < 2:
        raise GengapError(f"the model must return class logits of shape (N, classes), classes "
                          f"at least 2; it returned shape {tuple(out.shape)}")
    classes = out.shape[1]
    if y is not None:
        low, high = int(y.min()), int(y.max())
        if low < 0 or high >= classes:
            raise GengapError(f"y_train holds class {low if low < 0 else high}, but the model "
                              f"has {classes} outputs (classes 0 to {classes - 1})")
