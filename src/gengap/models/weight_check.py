"""What is wrong with a state dict read from a user's file, if anything: a parameter that is not
a float, or values that are not finite (a diverged or corrupted network gives measures that
mean nothing, silently)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from gengap.errors import GengapError


def weight_problem(state: Mapping[str, torch.Tensor], model: nn.Module | None = None
                   ) -> str | None:
    """A one-line description of the first problem in ``state``, or None. With ``model``, a
    tensor that is a float in the model (a weight, a running statistic) must be a float in the
    file too (integers would be cast without a word); without one, so must every weight matrix
    or kernel (a name ending in ``weight``, 2 or more dimensions); such a tensor must not be
    empty; every float tensor must be finite."""
    expected = model.state_dict() if model is not None else {}
    for name, tensor in state.items():
        wanted = expected.get(name)
        # without a model, a weight matrix or kernel (a *weight of 2 or more dimensions)
        should_float = (wanted.is_floating_point() if wanted is not None else
                        model is None and name.endswith("weight") and tensor.dim() >= 2)
        if should_float and not tensor.is_floating_point():
            return f"tensor {name!r} is {str(tensor.dtype).removeprefix('torch.')}, not a float"
        if should_float and tensor.numel() == 0:  # a layer with no weights has no spectrum
            return f"tensor {name!r} is empty (shape {tuple(tensor.shape)})"
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            return f"tensor {name!r} holds NaN or infinite values"
    return None


def load_checked(model: nn.Module, state: Mapping[str, torch.Tensor], where: str,
                 network: str) -> nn.Module:
    """``model`` with ``state`` loaded, or a one-line :class:`GengapError` naming ``where``
    (the weight file) and the problem: see :func:`weight_problem`, or names and shapes that do
    not fit ``network`` (how the message calls the model)."""
    problem = weight_problem(state, model)
    if problem:
        raise GengapError(f"{where}: {problem}")
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        detail = " ".join(line.strip() for line in str(err).splitlines()[:2])
        raise GengapError(f"{where}: weights do not fit the {network} ({detail})") from None
    return model
