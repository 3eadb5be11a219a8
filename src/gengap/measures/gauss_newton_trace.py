"""The exact trace of the training-loss Hessian of a piecewise-linear network, from per-example
gradients, without a Hessian-vector product.

Write the mean cross-entropy's Hessian as H = G + R, G = (1/N) Σ_i J_iᵀ A_i J_i the Gauss-Newton
matrix (J_i = ∂logits_i/∂θ, A_i = diag p_i − p_i p_iᵀ) and R = (1/N) Σ_i Σ_c (p_ic − y_ic)
∇²_θ logit_ic. When every module that holds parameters runs once and everything else is
piecewise linear (ReLU, pooling, BatchNorm in eval mode, sums: all of gengap's ReLU families),
the logits are piecewise linear in each module's parameters alone, so R's diagonal blocks, and
with them Tr R, vanish almost everywhere: Tr H = Tr G. With A_i = Σ_c p_ic (e_c − p_i)(e_c − p_i)ᵀ,

    Tr G = (1/N) Σ_i Σ_c ‖∇_θ u_icᵀ logits_i‖²,   u_ic = √p_ic (e_c − p_i),

a sum of per-example squared gradient norms: one forward pass, one backward pass per class
down to each module's output, and each module's per-example parameter gradient formed from
its input and that output gradient. Exact where Hutchinson's estimator (pyhessian's) is noisy.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from gengap.measures.layers import BATCH_NORMS
from gengap.measures.patches import layer_patches
from gengap.measures.smoothness import watched

FORMED = (nn.Linear, nn.Conv1d, nn.Conv2d, *BATCH_NORMS)  # per-example gradients built here
GRADIENT_BUDGET = 2**24  # entries of the output gradients of one backward pass (64 MiB f32;
# the bench NiN: as fast as 2**26, peak memory 0.67 GB against 0.96)


def gauss_newton_trace(model: nn.Module, x: torch.Tensor, device: torch.device,
                       batch_size: int = 32) -> float:
    """Tr G of the mean cross-entropy on inputs ``x`` (labels do not enter: A_i does not depend
    on them) over ``model``'s trainable parameters, by the module docstring's formula. Equal to
    the Hessian's trace where :func:`~gengap.measures.exact_trace_checks.exact_trace_obstacle`
    finds nothing (it also checks, on a probe, that these per-layer gradients add up)."""
    model = model.eval()
    total = 0.0
    with torch.enable_grad():
        for i in range(0, len(x), batch_size):
            batch = x[i : i + batch_size].to(device, copy=True)  # the model may work in place
            total += squared_gradient_norm_sum(model, batch, _centred_cotangents)
    return total / len(x)


class NotExact(Exception):
    """A forward pass met what the probe did not: a step that is not piecewise linear in the
    parameters, or a layer run twice (data-dependent control flow). The message says which."""


def squared_gradient_norm_sum(model: nn.Module, x: torch.Tensor,
                              cotangents_of: Callable[[torch.Tensor], torch.Tensor]) -> float:
    """Σ_k Σ_i ‖∇_θ u_kiᵀ logits_i‖² over ``model``'s trainable parameters, u =
    ``cotangents_of(logits)`` of shape (K, batch, classes), from each Linear, Conv1d, Conv2d and
    BatchNorm layer's input and output gradient (one forward pass of ``x``; batched backward
    passes over the K cotangents). The forward pass is watched
    (:func:`~gengap.measures.smoothness.watched`): :class:`NotExact` if it takes a step that
    is not piecewise linear in the parameters or runs a layer twice."""
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    modules = [m for m in model.modules() if isinstance(m, FORMED)
               and any(id(p) in trainable for p in m.parameters(recurse=False))]
    if not modules:
        return 0.0
    seen: list[tuple[nn.Module, torch.Tensor, torch.Tensor]] = []

    def hook(module: nn.Module, args: tuple, kwargs: dict, output: torch.Tensor
             ) -> torch.Tensor:
        inp = args[0] if args else next(iter(kwargs.values()))  # self.fc(input=h) too
        seen.append((module, inp.detach(), output))
        return output.clone()  # what comes next may work in place; `output` stays as it was

    handles = [m.register_forward_hook(hook, with_kwargs=True) for m in modules]
    try:
        with watched(model) as events:
            logits = model(x)
    finally:
        for h in handles:
            h.remove()
    if steps := sorted({what for kind, what in events if kind == "step"}):
        raise NotExact(f"not piecewise linear: {', '.join(steps)}")
    if len({id(m) for m, _, _ in seen}) < len(seen):
        raise NotExact("a layer ran more than once")
    cotangents = cotangents_of(logits.detach()).to(logits)  # its device too: autograd's rule
    # a layer whose output does not reach the logits (a discarded head, a no_grad region)
    # has no gradient: it adds 0
    reached = [(m, inp, out) for m, inp, out in seen if out.requires_grad]
    outputs = [out for _, _, out in reached]
    # cotangents per backward pass: their output gradients, (K, *output) per layer, bounded
    per_cotangent = sum(out.numel() for out in outputs)
    step = max(1, GRADIENT_BUDGET // max(per_cotangent, 1))
    total = 0.0
    for first in range(0, len(cotangents), step):
        # only the gradients in the outputs are asked for: autograd skips the weights' own
        deltas = torch.autograd.grad(logits, outputs, cotangents[first : first + step],
                                     retain_graph=first + step < len(cotangents),
                                     is_grads_batched=True, allow_unused=True)
        for (module, inp, _), delta in zip(reached, deltas, strict=True):
            if delta is not None:
                norms = _layer_squared_norms(module, trainable, inp, delta)
                total += float(norms.sum(dtype=torch.float64))
    return total


def _centred_cotangents(logits: torch.Tensor) -> torch.Tensor:
    """u_c = √p_c (e_c − p) for every class c, shape (C, b, C), in float64. 1 − p_c is taken
    as the sum of the other classes' probabilities, which keeps its precision when p_c ≈ 1."""
    p = torch.softmax(logits.double(), dim=1)
    classes = p.shape[1]
    u = -p.expand(classes, *p.shape).clone()  # u[c, i, :] = −p_i
    eye = torch.eye(classes, dtype=torch.bool, device=p.device)
    others = p.sum(dim=1, keepdim=True) - p  # Σ_{c' ≠ c} p_c' for each c
    u[eye.unsqueeze(1).expand_as(u)] = others.T.reshape(-1)
    return u * p.T.sqrt().unsqueeze(2)


def _layer_squared_norms(module: nn.Module, trainable: set[int], inp: torch.Tensor,
                            delta: torch.Tensor) -> torch.Tensor:
    """Σ over ``module``'s parameters in ``trainable`` (ids) of ‖∂(u_icᵀ logits_i)/∂θ‖² per
    class c and example i, (C, b), from its input and ``delta``, the gradients in its output
    for each class, (C, *output)."""
    weight, bias = module.weight, module.bias
    dtype = torch.promote_types(delta.dtype, torch.float32)
    delta, inp = delta.to(dtype), inp.to(dtype)
    if isinstance(module, BATCH_NORMS):
        flat = delta.reshape(*delta.shape[:3], -1)  # (C, b, channels, positions)
        shape = (1, -1) + (1,) * (inp.dim() - 2)
        normalized = (inp - module.running_mean.reshape(shape)) * torch.rsqrt(
            module.running_var.reshape(shape) + module.eps)
        weight_sq = (flat * normalized.reshape(*normalized.shape[:2], -1)).sum(-1).pow(2).sum(-1)
    else:
        if isinstance(module, nn.Linear):  # (.., out) -> (C, b, out, positions)
            flat = delta.reshape(delta.shape[0], delta.shape[1], -1, delta.shape[-1])
            flat = flat.transpose(2, 3)
        else:
            flat = delta.reshape(*delta.shape[:3], -1)
        patches = layer_patches(module, inp)  # (b, in·k, positions)
        weight_sq = _outer_sum_norms(flat, patches)
    total = torch.zeros(delta.shape[:2], dtype=torch.float64, device=delta.device)
    if weight is not None and id(weight) in trainable:
        total += weight_sq
    if bias is not None and id(bias) in trainable:
        total += flat.sum(-1).pow(2).sum(-1)
    return total


def _outer_sum_norms(flat: torch.Tensor, patches: torch.Tensor) -> torch.Tensor:
    """‖Σ_p δ_p P_pᵀ‖²_F per class and example, δ = ``flat`` (C, b, out, positions) and P =
    ``patches`` (b, features, positions): by the gradient itself, or by Gram matrices over
    positions (Σ_{p,q} ⟨δ_p, δ_q⟩⟨P_p, P_q⟩) where that is fewer operations."""
    classes, _, out, positions = flat.shape
    features = patches.shape[1]
    if positions == 1:
        return flat.pow(2).sum((2, 3)) * patches.pow(2).sum((1, 2))
    direct = classes * out * features * positions
    gram = positions * positions * (features + classes * out)
    if direct <= gram:
        return torch.matmul(flat, patches.transpose(1, 2)).pow(2).sum((2, 3))
    # in float64: a sum of products of Gram entries cancels where the patches share an offset
    flat, patches = flat.double(), patches.double()
    overlap = patches.transpose(1, 2) @ patches  # (b, positions, positions)
    return (flat.transpose(2, 3) @ flat * overlap).sum((2, 3))
