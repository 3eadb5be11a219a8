"""When the Gauss-Newton trace of :mod:`gengap.measures.gauss_newton_trace` is the loss
Hessian's trace, and is computed right.

First what the model's structure says (cheap, and a clear reason): trainable parameters only in
Linear, Conv1d, Conv2d and BatchNorm layers whose per-example gradients are formed there, none
shared, no such layer run twice, BatchNorm on running statistics, no smooth step in a probe
forward pass (:func:`~gengap.measures.smoothness.smooth_steps`). Then two numerical checks on
the probe, which catch what names cannot (a weight used through ``F.linear`` outside its
module, a layer subclass with its own ``forward``, a parametrized weight, rows of a layer that
are not examples, a smooth function missing from the list):

- the logits are linear in each layer's own parameters alone: the second derivative of a
  random combination of the logits along a random direction in them is 0 (autograd gives an
  exact 0 through ReLU, pooling and BatchNorm in eval mode);
- the per-layer construction gives the same Σ_k Σ_i ‖∇_θ u_kiᵀ logits_i‖² as autograd does
  for each probe example alone, for random u.

What data-dependent control flow takes on other examples than the probe's is watched during
the computation itself (:class:`~gengap.measures.gauss_newton_trace.NotExact`).
"""

from __future__ import annotations

import torch
from torch import nn

from gengap.device import ieee_float32
from gengap.measures.features import calls
from gengap.measures.gauss_newton_trace import FORMED, NotExact, squared_gradient_norm_sum
from gengap.measures.layers import BATCH_NORMS
from gengap.measures.patches import patch_obstacle
from gengap.measures.smoothness import smooth_steps

CURVATURE_RTOL = 1e-6  # |vᵀ∇²(wᵀlogits)v| against ‖∇(wᵀlogits)‖·‖v‖: 0 where linear
AGREEMENT_RTOL = {torch.float64: 1e-9, torch.float32: 1e-4}  # other dtypes: 1e-2


def exact_trace_obstacle(model: nn.Module, probe: torch.Tensor) -> str | None:
    """Why the trace of ``model``'s loss Hessian may differ from what
    :func:`~gengap.measures.gauss_newton_trace.gauss_newton_trace` computes, or None when the
    module docstring's checks pass on ``probe`` (at least two examples, on the model's device;
    each forward pass gets a copy of it). Puts the model in eval mode."""
    model = model.eval()
    if (why := _structure_obstacle(model)) is not None:
        return why
    if smooth := smooth_steps(model, probe):
        return f"not piecewise linear: {', '.join(smooth)}"
    owners = {n for n, m in model.named_modules()
              if any(p.requires_grad for p in m.parameters(recurse=False))}
    holders = [(n, m) for n, m in model.named_modules() if n in owners]
    counts: dict[str, int] = {}
    for name, _ in calls(model, probe.clone(), holders):
        counts[name] = counts.get(name, 0) + 1
    if repeated := sorted(n for n, k in counts.items() if k > 1):
        return f"{', '.join(repeated)} runs more than once"
    gen = torch.Generator().manual_seed(0)
    try:
        with ieee_float32():  # float32 results held to 1e-6 and 1e-4: no TF32 (GPU)
            if (curved := _curved_layer(model, holders, probe, gen)) is not None:
                return f"the logits are curved in {curved}'s parameters alone"
            if not _per_example_gradients_add_up(model, probe, gen):
                return ("per-layer gradients do not add up to the model's (a weight used "
                        "outside its layer's forward, or rows of a layer that are not "
                        "examples)")
    except NotExact as err:
        return str(err)
    except (RuntimeError, IndexError, ValueError, TypeError, AttributeError) as err:
        # a model the checks cannot run through (a tuple output, an op without double backward)
        return f"the exact trace's checks failed ({type(err).__name__}: {err})".split("\n")[0]
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
def _curved_layer(model: nn.Module, holders: list[tuple[str, nn.Module]], probe: torch.Tensor,
                  gen: torch.Generator) -> str | None:
    """The name of a layer in whose own parameters (jointly: W x + b is linear in (W, b)) the
    logits are not linear on ``probe``: one second derivative per layer."""
    per_layer = [(name, [p for p in m.parameters(recurse=False) if p.requires_grad])
                 for name, m in holders]
    params = [p for _, own in per_layer for p in own]
    logits = model(probe.clone())
    w = torch.randn(logits.shape, generator=gen).to(logits)
    grads = dict(zip(map(id, params), torch.autograd.grad(
        (w * logits).sum(), params, create_graph=True, allow_unused=True), strict=True))
    for name, own in per_layer:
        pairs = [(p, grads[id(p)]) for p in own if grads[id(p)] is not None]
        pairs = [(p, g) for p, g in pairs if g.requires_grad]  # else nothing of p is left in it
        if not pairs:
            continue
        directions = [torch.randn(p.shape, generator=gen).to(p) for p, _ in pairs]
        slope = sum((g * v).sum() for (_, g), v in zip(pairs, directions, strict=True))
        second = torch.autograd.grad(slope, [p for p, _ in pairs], retain_graph=True,
                                     allow_unused=True)
        curvature = sum(float((h.detach() * v).sum()) for h, v in
                        zip(second, directions, strict=True) if h is not None)
        size = sum(float(g.detach().norm() * v.norm()) for (_, g), v in
                   zip(pairs, directions, strict=True))
        if abs(curvature) > CURVATURE_RTOL * size:
            return name
    return None


@torch.enable_grad()
def _per_example_gradients_add_up(model: nn.Module, probe: torch.Tensor,
                                  gen: torch.Generator) -> bool:
    both = model(probe.clone())
    u = torch.randn((2, len(probe), both.shape[1]), generator=gen, dtype=torch.float64)
    formed = squared_gradient_norm_sum(model, probe.clone(), lambda _logits: u)
    params = [p for p in model.parameters() if p.requires_grad]
    direct = 0.0
    for i in range(len(probe)):
        logits = model(probe[i : i + 1].clone()).reshape(-1)  # (classes,), squeezed or not
        for k in range(len(u)):
            grads = torch.autograd.grad((u[k, i].to(logits) * logits).sum(), params,
                                        retain_graph=True, allow_unused=True)
            direct += sum(float(g.double().pow(2).sum()) for g in grads if g is not None)
    rtol = AGREEMENT_RTOL.get(both.dtype, 1e-2)
    return abs(formed - direct) <= rtol * max(abs(direct), abs(formed), 1e-30)
