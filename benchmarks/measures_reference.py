"""Straightforward implementations of the deterministic measures and of the σ′/α′ definitions,
for benchmarks/bench_measures.py to check gengap's fast paths against (issue 10).

Nothing here shares code with gengap.measures: BatchNorm is folded by hand in numpy (float64),
the logits come from the unfolded model run in small batches, and the perturbed
networks are plain deep copies whose parameters are overwritten.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def folded_layers(model: nn.Module) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """(weight, bias) of every Conv/Linear layer in order, each followed BatchNorm folded in:
    W·γ/√(var+ε) per output channel, bias (b − mean)·γ/√(var+ε) + β (float64 numpy)."""
    modules = list(model.modules())
    out = []
    for i, m in enumerate(modules):
        if not isinstance(m, (nn.Conv2d, nn.Linear)):
            continue
        w = m.weight.detach().double().cpu().numpy()
        b = m.bias.detach().double().cpu().numpy() if m.bias is not None else None
        nxt = modules[i + 1] if i + 1 < len(modules) else None
        if isinstance(nxt, nn.modules.batchnorm._BatchNorm):
            scale = (nxt.weight.detach().double() / torch.sqrt(
                nxt.running_var.double() + nxt.eps)).cpu().numpy()
            mean = nxt.running_mean.double().cpu().numpy()
            w = w * scale.reshape(-1, *([1] * (w.ndim - 1)))
            b = ((b if b is not None else 0.0) - mean) * scale + nxt.bias.detach().double(
                ).cpu().numpy()
        out.append((w, b))
    return out


@torch.no_grad()
def plain_logits(model: nn.Module, x: torch.Tensor, batch: int = 250) -> np.ndarray:
    """The unfolded model's logits in batches of ``batch`` (float32, as trained), as float64."""
    twin = copy.deepcopy(model).cpu().eval()
    return torch.cat([twin(x[i : i + batch]) for i in range(0, len(x), batch)]).double().numpy()


def deterministic(model: nn.Module, init: nn.Module, x: torch.Tensor,
                  y: torch.Tensor) -> dict[str, float]:
    """The norm, margin and output measures, straight from their formulas."""
    layers = [w.reshape(w.shape[0], -1) for w, _ in folded_layers(model)]
    layers0 = [w.reshape(w.shape[0], -1) for w, _ in folded_layers(init)]
    d = len(layers)
    fro = [float(np.sum(w**2)) for w in layers]
    spec = [float(np.linalg.svd(w, compute_uv=False)[0] ** 2) for w in layers]
    dist = [float(np.sum((w - w0) ** 2)) for w, w0 in zip(layers, layers0, strict=True)]
    dist_spec = [float(np.linalg.svd(w - w0, compute_uv=False)[0] ** 2)
                 for w, w0 in zip(layers, layers0, strict=True)]
    z = plain_logits(model, x)
    yy = y.numpy()
    rows = np.arange(len(yy))
    true = z[rows, yy]
    others = z.copy()
    others[rows, yy] = -np.inf
    margins = np.sort(true - others.max(1))
    gamma = abs(margins[max(1, len(margins) // 10) - 1])
    shifted = z - z.max(1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(1, keepdims=True))
    log_prod_fro, log_prod_spec = sum(map(math.log, fro)), sum(map(math.log, spec))
    squared = copy.deepcopy(model).double().cpu().eval()
    # path norm on the folded network: the folded layers, every parameter squared, in order
    path = _path_norm(squared, folded_layers(model), x.shape[1:])
    lg2 = 2 * math.log(gamma)
    return {
        "params": float(sum(p.numel() for p in model.parameters())),
        "param_norm": sum(fro),
        "frobenius_distance": sum(dist),
        "log_prod_of_fro": log_prod_fro,
        "log_sum_of_fro": math.log(d) + log_prod_fro / d,
        "log_prod_of_spec": log_prod_spec,
        "log_sum_of_spec": math.log(d) + log_prod_spec / d,
        "fro_over_spec": sum(f / s for f, s in zip(fro, spec, strict=True)),
        "dist_spec_init": sum(dist_spec),
        "margin": gamma,
        "inverse_margin": 1 / gamma**2,
        "cross_entropy": float(-log_p[rows, yy].mean()),
        "output_entropy": float(-(np.exp(log_p) * log_p).sum(1).mean()),
        "log_prod_of_spec_over_margin": log_prod_spec - lg2,
        "log_prod_of_fro_over_margin": log_prod_fro - lg2,
        "log_sum_of_fro_over_margin": math.log(d) + (log_prod_fro - lg2) / d,
        "log_spec_orig_main": log_prod_spec - lg2 + math.log(
            sum(f / s for f, s in zip(fro, spec, strict=True))),
        "log_spec_init_main": log_prod_spec - lg2 + math.log(
            sum(f / s for f, s in zip(dist, spec, strict=True))),
        "path_norm": path,
        "path_norm_over_margin": path / gamma**2,
    }


@torch.no_grad()
def _path_norm(model: nn.Module, layers: list, input_shape: tuple[int, ...]) -> float:
    """Σ_j f_{w²}(1)[j] with BatchNorm replaced by the identity after folding by hand."""
    convs = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    for m, (w, b) in zip(convs, layers, strict=True):
        m.weight.copy_(torch.from_numpy(w**2))
        if b is not None:
            m.bias = nn.Parameter(torch.from_numpy(b**2))
    _identity_batchnorm(model)
    return float(model(torch.ones(1, *input_shape, dtype=torch.float64)).sum())


def folded_copy(model: nn.Module) -> tuple[nn.Module, list[nn.Parameter]]:
    """A float32 copy with BatchNorm folded by hand (identity BatchNorm left), and the list of
    its Conv/Linear weights and biases in order: the parameters σ′ and α′ perturb."""
    twin = copy.deepcopy(model).float().cpu().eval()
    layers = folded_layers(model)
    convs = [m for m in twin.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    params = []
    with torch.no_grad():
        for m, (w, b) in zip(convs, layers, strict=True):
            m.weight.copy_(torch.from_numpy(w))
            m.bias = nn.Parameter(torch.from_numpy(b).float()) if b is not None else None
            params.append(m.weight)
            if m.bias is not None:
                params.append(m.bias)
        _identity_batchnorm(twin)
    return twin, params


def _identity_batchnorm(model: nn.Module) -> None:
    """Make every BatchNorm the identity in eval mode (after its scale was folded by hand)."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.zero_()
            m.running_var.fill_(1.0 - m.eps)
            m.weight.fill_(1.0)
            m.bias.zero_()


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 500) -> np.ndarray:
    with torch.no_grad():
        return torch.cat([model(x[i : i + batch]).argmax(1) == y[i : i + batch]
                          for i in range(0, len(y), batch)]).numpy()


def sigma_drop(model: nn.Module, x: torch.Tensor, y: torch.Tensor, sigma: float,
               magnitude: bool, draws: int = 10, seed: int = 123,
               eps: float = 1e-3) -> tuple[float, float]:
    """The reference's estimate of D(σ): ``draws`` Gaussian perturbations of the folded
    parameters (std σ, or √(σ²w² + ε²)), each on all of ``x``; (mean drop, its standard
    error over the draws)."""
    twin, params = folded_copy(model)
    clean = accuracy(twin, x, y).mean()
    base = [p.detach().clone() for p in params]
    gen = torch.Generator().manual_seed(seed)
    drops = []
    for _ in range(draws):
        with torch.no_grad():
            for p, p0 in zip(params, base, strict=True):
                std = torch.sqrt(sigma**2 * p0**2 + eps**2) if magnitude else sigma
                p.copy_(p0 + std * torch.randn(p0.shape, generator=gen))
        drops.append(clean - accuracy(twin, x, y).mean())
    return float(np.mean(drops)), float(np.std(drops, ddof=1) / math.sqrt(draws))


def alpha_drop(model: nn.Module, x: torch.Tensor, y: torch.Tensor, alpha: float,
               magnitude: bool, x_eval: torch.Tensor, y_eval: torch.Tensor, steps: int = 10,
               batch: int = 256, seed: int = 321, eps: float = 1e-3) -> tuple[float, float]:
    """The reference's α probe from scratch: a uniform random start in the box, ``steps``
    signed-gradient ascent steps of 2.5·radius/steps on minibatches of ``batch`` examples of
    ``x``, projected back into the box; (drop on ``x_eval``, its binomial standard error)."""
    twin, params = folded_copy(model)
    clean = accuracy(twin, x_eval, y_eval)
    base = [p.detach().clone() for p in params]
    gen = torch.Generator().manual_seed(seed)
    radius = [alpha * p0.abs() + eps if magnitude else torch.full_like(p0, alpha) for p0 in base]
    u = [(torch.rand(p0.shape, generator=gen) * 2 - 1) * r for p0, r in zip(base, radius,
                                                                              strict=True)]
    for _ in range(steps):
        idx = torch.randint(len(y), (batch,), generator=gen)
        with torch.no_grad():
            for p, p0, du in zip(params, base, u, strict=True):
                p.copy_(p0 + du)
        twin.zero_grad()
        F.cross_entropy(twin(x[idx]), y[idx]).backward()
        with torch.no_grad():
            u = [torch.clamp(du + 2.5 * r / steps * p.grad.sign(), -r, r)
                 for du, r, p in zip(u, radius, params, strict=True)]
    with torch.no_grad():
        for p, p0, du in zip(params, base, u, strict=True):
            p.copy_(p0 + du)
    per_example = clean.astype(float) - accuracy(twin, x_eval, y_eval).astype(float)
    return float(per_example.mean()), float(per_example.std(ddof=1) / math.sqrt(len(y_eval)))
