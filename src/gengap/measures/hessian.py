"""Hessian-vector products of the training loss and what they give: the top eigenvalue (by the
Lanczos method; pyhessian uses power iteration, which reaches the same value in more products
where the top eigenvalue is also the largest in magnitude, as at a minimum)
and the trace by Hutchinson's estimator (as pyhessian computes it), without ever forming the
Hessian."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

Vector = list[torch.Tensor]
TRACE_GROUP = 16  # Hutchinson vectors whose products share one pass over the data


def loss_hvp(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024
) -> tuple[list[nn.Parameter], LossHVP]:
    """The trainable parameters of ``model`` and v ↦ H v, H the Hessian of the mean
    cross-entropy on (x, y) (model in eval mode; batches weighted by their size)."""
    params = [p for p in model.parameters() if p.requires_grad]
    return params, LossHVP(model, params, x, y, batch_size)


class LossHVP:
    """Hessian-vector products of the mean cross-entropy by double backward, batch by batch.
    Calling it gives one product; :meth:`many` gives several in one pass over the data, each
    batch's first-order graph built once for all of them (the same values, bit for bit)."""

    def __init__(self, model: nn.Module, params: list[nn.Parameter], x: torch.Tensor,
                 y: torch.Tensor, batch_size: int) -> None:
        self.model, self.params, self.x, self.y = model, params, x, y
        self.batch_size = batch_size

    def __call__(self, v: Vector) -> Vector:
        return self.many([v])[0]

    def many(self, vectors: list[Vector]) -> list[Vector]:
        """H v for every v of ``vectors``."""
        # attention's fused CPU kernels have no double backward: the plain math one does
        with sdpa_kernel(SDPBackend.MATH):
            return self._many(vectors)

    def _many(self, vectors: list[Vector]) -> list[Vector]:
        x, y, params = self.x, self.y, self.params
        device = params[0].device
        out = [[torch.zeros_like(p) for p in params] for _ in vectors]
        for i in range(0, len(x), self.batch_size):
            xb, yb = x[i : i + self.batch_size].to(device), y[i : i + self.batch_size].to(device)
            loss = nn.functional.cross_entropy(self.model(xb), yb) * (len(xb) / len(x))
            # a parameter the loss does not use has zero rows in H (allow_unused)
            grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
            for k, v in enumerate(vectors):
                dot = sum((g * u).sum() for g, u in zip(grads, v, strict=True) if g is not None)
                if not isinstance(dot, torch.Tensor) or not dot.requires_grad:
                    continue  # the loss is linear in what it uses: H = 0
                keep = k < len(vectors) - 1  # the graph serves the next vector too
                products = torch.autograd.grad(dot, params, retain_graph=keep, allow_unused=True)
                for o, h in zip(out[k], products, strict=True):
                    if h is not None:
                        o.add_(h.detach())
        return out


def _dot(a: Vector, b: Vector) -> torch.Tensor:
    return sum((u * w).sum() for u, w in zip(a, b, strict=True))  # type: ignore[return-value]


@dataclass
class Lanczos:
    """A Lanczos run: the largest Ritz value, the orthonormal basis (k, P) of the Krylov space
    it spanned, and the diagonal q_iᵀHq_i of the projected Hessian QᵀHQ (its trace is exact)."""

    value: float
    basis: torch.Tensor
    diagonal: list[float]


def lanczos(
    hvp: Callable[[Vector], Vector],
    like: Vector,
    iterations: int = 200,
    tol: float = 1e-4,
    generator: torch.Generator | None = None,
) -> Lanczos:
    """The Hessian's largest eigenvalue λ_max (algebraically: away from a minimum a negative
    eigenvalue can be larger in magnitude, and power iteration, pyhessian's method, would
    return that one) by the Lanczos method from a random start, with full
    reorthogonalization: after k Hessian-vector products the largest Ritz value θ of the k×k
    tridiagonal matrix is the best estimate the Krylov space gives (power iteration's
    estimate lies in the same space, so it needs at least as many products, usually many
    more). Stopped when the Ritz pair's residual
    ‖Hy − θy‖ = β_k·|s_k| (‖y‖ = 1) is at most ``tol``·|θ|, which puts an eigenvalue within that
    distance of θ, as power iteration's test does; at most ``iterations`` products."""
    v = torch.cat([torch.randn(p.shape, generator=generator).to(p).reshape(-1) for p in like])
    basis = [v / v.norm()]
    diagonal: list[float] = []
    off: list[float] = []
    theta = 0.0
    for k in range(iterations):
        w = _flat(hvp(_unflat(basis[-1], like)))
        diagonal.append(float(w @ basis[-1]))
        stacked = torch.stack(basis)
        for _ in range(2):  # full reorthogonalization, twice is enough in floating point
            w = w - stacked.T @ (stacked @ w)
        beta = float(w.norm())
        tri = torch.diag(torch.tensor(diagonal, dtype=torch.float64))
        if k:
            sub = torch.tensor(off, dtype=torch.float64)
            tri += torch.diag(sub, 1) + torch.diag(sub, -1)
        values, vectors = torch.linalg.eigh(tri)
        j = len(values) - 1  # eigh sorts ascending: the largest Ritz value
        theta = float(values[j])
        done = beta * abs(float(vectors[-1, j])) <= tol * abs(theta) or beta == 0.0
        if done or len(basis) == len(v):  # converged, or the whole space spanned (θ exact)
            break
        off.append(beta)
        basis.append(w / beta)
    return Lanczos(theta, torch.stack(basis[: len(diagonal)]), diagonal)  # the probed vectors


def _flat(vector: Vector) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in vector])


def _unflat(flat: torch.Tensor, like: Vector) -> Vector:
    out, at = [], 0
    for p in like:
        out.append(flat[at : at + p.numel()].view_as(p))
        at += p.numel()
    return out


def hutchinson_trace(
    hvp: Callable[[Vector], Vector],
    like: Vector,
    samples: int = 100,
    generator: torch.Generator | None = None,
    deflate: Lanczos | None = None,
) -> tuple[float, float]:
    """Tr(H) ≈ mean of vᵀHv over Rademacher vectors v (Hutchinson 1989); returns the estimate
    and its standard error. With ``deflate`` (a :func:`lanczos` run on the same H, basis Q):
    Tr(H) = Tr(QᵀHQ) + Tr((I − QQᵀ)H(I − QQᵀ)), the first term exact (the run's diagonal), the
    second the mean of ṽᵀHṽ, ṽ = (I − QQᵀ)v: unbiased as well, and with a smaller spread when
    the Krylov space holds the dominant eigenvalues (Hutch++, Meyer et al. 2021, with the
    Lanczos space as the sketch)."""
    values = []
    many = getattr(hvp, "many", None)  # several products per pass over the data, if it can
    for start in range(0, samples, TRACE_GROUP):
        group = []
        for _ in range(min(TRACE_GROUP, samples - start)):
            v = [
                (torch.randint(0, 2, p.shape, generator=generator) * 2 - 1).to(p) for p in like
            ]
            if deflate is not None:
                flat = _flat(v)
                basis = deflate.basis.to(flat)
                v = _unflat(flat - basis.T @ (basis @ flat), like)
            group.append(v)
        products = many(group) if many is not None else [hvp(v) for v in group]
        values += [float(_dot(h, v)) for h, v in zip(products, group, strict=True)]
    t = torch.tensor(values, dtype=torch.float64)
    exact = sum(deflate.diagonal) if deflate is not None else 0.0
    stderr = float(t.std() / len(t) ** 0.5) if len(t) > 1 else float("nan")
    return exact + float(t.mean()), stderr
