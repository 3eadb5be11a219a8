"""Hessian-vector products of the training loss and what they give: the top eigenvalue by power
iteration and the trace by Hutchinson's estimator (as pyhessian computes them), without ever
forming the Hessian."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

Vector = list[torch.Tensor]


def loss_hvp(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024
) -> tuple[list[nn.Parameter], Callable[[Vector], Vector]]:
    """The trainable parameters of ``model`` and v ↦ H v, H the Hessian of the mean
    cross-entropy on (x, y) (model in eval mode; batches weighted by their size)."""
    params = [p for p in model.parameters() if p.requires_grad]
    device = params[0].device

    def hvp(v: Vector) -> Vector:
        out = [torch.zeros_like(p) for p in params]
        for i in range(0, len(x), batch_size):
            xb, yb = x[i : i + batch_size].to(device), y[i : i + batch_size].to(device)
            loss = nn.functional.cross_entropy(model(xb), yb) * (len(xb) / len(x))
            grads = torch.autograd.grad(loss, params, create_graph=True)
            dot = sum((g * u).sum() for g, u in zip(grads, v, strict=True))
            for o, h in zip(out, torch.autograd.grad(dot, params), strict=True):
                o.add_(h.detach())
        return out

    return params, hvp


def _dot(a: Vector, b: Vector) -> torch.Tensor:
    return sum((u * w).sum() for u, w in zip(a, b, strict=True))  # type: ignore[return-value]


def top_eigenvalue(
    hvp: Callable[[Vector], Vector],
    like: Vector,
    iterations: int = 200,
    tol: float = 1e-4,
    generator: torch.Generator | None = None,
) -> float:
    """The Hessian's dominant eigenvalue (largest in magnitude; the top one at a minimum) by
    power iteration from a random start, stopped when the residual ‖Hv − θv‖ (θ = vᵀHv, ‖v‖ = 1)
    is at most ``tol``·|θ|, which puts an eigenvalue within that distance of θ."""
    v = [torch.randn(p.shape, generator=generator).to(p) for p in like]
    norm = _dot(v, v).sqrt()
    v = [t / norm for t in v]
    theta = 0.0
    for _ in range(iterations):
        hv = hvp(v)
        theta = float(_dot(hv, v))
        residual = float(sum(((h - theta * u) ** 2).sum() for h, u in zip(hv, v, strict=True)))
        norm = _dot(hv, hv).sqrt()
        if float(norm) == 0.0:
            return 0.0
        if residual**0.5 <= tol * abs(theta):
            return theta
        v = [t / norm for t in hv]
    return theta


def hutchinson_trace(
    hvp: Callable[[Vector], Vector],
    like: Vector,
    samples: int = 100,
    generator: torch.Generator | None = None,
) -> tuple[float, float]:
    """Tr(H) ≈ mean of vᵀHv over Rademacher vectors v (Hutchinson 1989); returns the estimate
    and its standard error."""
    values = []
    for _ in range(samples):
        v = [
            (torch.randint(0, 2, p.shape, generator=generator) * 2 - 1).to(p) for p in like
        ]
        values.append(float(_dot(hvp(v), v)))
    t = torch.tensor(values, dtype=torch.float64)
    return float(t.mean()), float(t.std() / len(t) ** 0.5) if len(t) > 1 else float("nan")
