"""When the Gauss-Newton trace of :mod:`gengap.measures.gauss_newton_trace` is the loss
Hessian's trace, and is computed right.

First what the model's structure says (cheap, and a clear reason): trainable parameters only in
Linear, Conv1d, Conv2d and BatchNorm layers whose per-example gradients are formed there, none
shared, no such layer run twice, BatchNorm on running statistics, no smooth step in a probe
forward pass (:func:`~gengap.measures.smoothness.smooth_steps`). Then two numerical checks on
the probe, which catch what names cannot (a weight used through ``F.linear`` outside its
module, a layer subclass with its own ``forward``, a parametrized weight, rows of a layer that
are not examples, a smooth function missing from the list):

- the logits are linear in each trainable tensor alone: the second derivative of a random
  combination of the logits along a random direction in that tensor is 0 (autograd gives an
  exact 0 through ReLU, pooling and BatchNorm in eval mode);
- the per-layer construction gives the same Σ_k Σ_i ‖∇_θ u_kiᵀ logits_i‖² as autograd does
  for each probe example alone, for random u.
"""

from __future__ import annotations

import torch
from torch import nn

from gengap.measures.features import calls
from gengap.measures.gauss_newton_trace import FORMED, squared_gradient_norm_sum
from gengap.measures.layers import BATCH_NORMS
from gengap.measures.patches import patch_obstacle
from gengap.measures.smoothness import smooth_steps

CURVATURE_RTOL = 1e-6  # |vᵀ∇²(wᵀlogits)v| against ‖∇(wᵀlogits)‖·‖v‖: 0 where linear
AGREEMENT_RTOL = {torch.float64: 1e-9, torch.float32: 1e-4}  # other dtypes: 1e-2


def exact_trace_obstacle(model: nn.Module, probe: torch.Tensor) -> str | None:
    """Why the trace of ``model``'s loss Hessian may differ from what
    :func:`~gengap.measures.gauss_newton_trace.gauss_newton_trace` computes, or None when the
    module docstring's checks pass on ``probe`` (at least two examples, on the model's
    device)."""
    model = model.eval()
    if (why := _structure_obstacle(model)) is not None:
        return why
    if smooth := smooth_steps(model, probe):
        return f"not piecewise linear: {', '.join(smooth)}"
    owners = {n for n, m in model.named_modules()
              if any(p.requires_grad for p in m.parameters(recurse=False))}
    counts: dict[str, int] = {}
    for name, _ in calls(model, probe, [(n, m) for n, m in model.named_modules() if n in owners]):
        counts[name] = counts.get(name, 0) + 1
    if repeated := sorted(n for n, k in counts.items() if k > 1):
        return f"{', '.join(repeated)} runs more than once"
    gen = torch.Generator().manual_seed(0)
    if (curved := _curved_tensor(model, probe, gen)) is not None:
        return f"the logits are curved in {curved} alone"
    if not _per_example_gradients_add_up(model, probe, gen):
        return ("per-layer gradients do not add up to the model's (a weight used outside its "
                "layer's forward, or rows of a layer that are not examples)")
    return None


def _structure_obstacle(model: nn.Module) -> str | None:
    owners: dict[int, str] = {}
    for name, module in model.named_modules():
        if isinstance(module, BATCH_NORMS) and module.running_mean is None:
            return f"{name}: a BatchNorm without running statistics"
        own = [p for p in module.parameters(recurse=False) if p.requires_grad]
        if not own:
            continue
        if not isinstance(module, FORMED):
            return f"{name or 'the model'}: parameters in a layer of type {type(module).__name__}"
        if not isinstance(module, BATCH_NORMS) and (why := patch_obstacle(module)) is not None:
            return f"{name}: {why}"
        for p in own:
            if id(p) in owners:
                return f"{name} shares a parameter with {owners[id(p)]}"
            owners[id(p)] = name
    return None


@torch.enable_grad()
def _curved_tensor(model: nn.Module, probe: torch.Tensor, gen: torch.Generator) -> str | None:
    """The name of a trainable tensor in which the logits are not linear on ``probe``."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    logits = model(probe)
    w = torch.randn(logits.shape, generator=gen).to(logits)
    grads = torch.autograd.grad((w * logits).sum(), [p for _, p in named], create_graph=True,
                                allow_unused=True)
    for (name, p), g in zip(named, grads, strict=True):
        if g is None or not g.requires_grad:  # nothing of p left in its gradient: linear
            continue
        v = torch.randn(p.shape, generator=gen).to(p)
        (hv,) = torch.autograd.grad((g * v).sum(), p, retain_graph=True, allow_unused=True)
        if hv is None:
            continue
        curvature = float((hv.detach() * v).sum().abs())
        if curvature > CURVATURE_RTOL * float(g.detach().norm() * v.norm()):
            return name
    return None


@torch.enable_grad()
def _per_example_gradients_add_up(model: nn.Module, probe: torch.Tensor,
                                  gen: torch.Generator) -> bool:
    first = model(probe[:1])
    u = torch.randn((2, len(probe), first.shape[1]), generator=gen, dtype=torch.float64)
    formed = squared_gradient_norm_sum(model, probe, lambda _logits: u)
    params = [p for p in model.parameters() if p.requires_grad]
    direct = 0.0
    for i in range(len(probe)):
        logits = model(probe[i : i + 1])
        for k in range(len(u)):
            grads = torch.autograd.grad((u[k, i].to(logits) * logits[0]).sum(), params,
                                        retain_graph=True, allow_unused=True)
            direct += sum(float(g.double().pow(2).sum()) for g in grads if g is not None)
    rtol = AGREEMENT_RTOL.get(first.dtype, 1e-2)
    return abs(formed - direct) <= rtol * max(abs(direct), abs(formed), 1e-30)
