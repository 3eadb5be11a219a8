"""Flatness measures: relative flatness (Petzka et al. 2021), module criticality (Chatterji,
Neyshabur & Sedghi 2020), and the training loss Hessian's top eigenvalue and trace (as pyhessian
computes them). Curvature is taken of the mean training cross-entropy, model in eval mode."""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from gengap.measures.context import MeasureContext
from gengap.measures.features import head_matrix, weight_layers
from gengap.measures.hessian import hutchinson_trace, loss_hvp, top_eigenvalue
from gengap.measures.registry import measure

DATA = ("weights", "train_data")
HESSIAN_EXAMPLES = 512  # training examples the Hessian measures use (a seeded subset)
HUTCHINSON_SAMPLES = 30
POWER_ITERATIONS = 100
CRITICALITY_EXAMPLES = 512
CRITICALITY_DRAWS = 5  # noise draws per (α, σ) grid point (the reference code uses 10)
CRITICALITY_GRID = 10  # α takes 11 values in [0, 1]; σ 11 log-spaced values (see below)
CRITICALITY_DECADES = 3  # σ runs over rms(W_F) · [10^-3, 1]
CRITICALITY_RTOL = 1.01  # a grid point is feasible when mean perturbed loss ≤ 1.01 × final


def relative_flatness_closed_form(
    features: torch.Tensor, logits: torch.Tensor, head: torch.Tensor
) -> float:
    """κ_Tr = (1/N) Σ_i ‖φ_i‖² Tr(G (diag(p_i) − p_i p_iᵀ)), G = W Wᵀ, p_i = softmax(logits_i):
    Petzka et al.'s Σ_{s,s'} ⟨w_s, w_s'⟩ Tr(H_{s,s'}) for the head W (rows w_s) of a softmax
    cross-entropy model, whose Hessian blocks are H_{s,s'} = (1/N) Σ_i (diag p_i − p_i p_iᵀ)_{ss'}
    φ_i φ_iᵀ."""
    p = torch.softmax(logits.double(), dim=1)
    gram = head.double() @ head.double().T
    # Tr(G (diag p − p pᵀ)) = Σ_s G_ss p_s − pᵀ G p
    curvature = p @ gram.diagonal() - ((p @ gram) * p).sum(dim=1)
    return float((features.double().pow(2).sum(dim=1) * curvature).mean())


@measure("relative_flatness", group="flatness", needs=DATA, cost="C")
def relative_flatness(ctx: MeasureContext) -> float:
    """κ_Tr = Σ_{s,s'} ⟨w_s, w_s'⟩ Tr(H_{s,s'}) of the head W on the penultimate features φ
    (Petzka et al. 2021), in closed form for softmax cross-entropy:
    (1/N) Σ_i ‖φ_i‖² Tr(W Wᵀ (diag p_i − p_i p_iᵀ)); one forward pass."""
    feats = ctx.penultimate
    return relative_flatness_closed_form(feats, ctx.logits, head_matrix(ctx.model))


def _subset(ctx: MeasureContext, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = ctx.require_data()
    if len(x) <= size:
        return x, y
    gen = torch.Generator().manual_seed(ctx.options.seed)
    idx = torch.randperm(len(x), generator=gen)[:size]
    return x[idx], y[idx]


@measure("hessian_top_eigenvalue", group="flatness", needs=DATA, cost="E")
def hessian_top_eigenvalue(ctx: MeasureContext) -> float:
    """λ_max(∇²L): the dominant eigenvalue of the training-loss Hessian by power iteration on
    Hessian-vector products (pyhessian's method), on a seeded subset of 512 examples."""
    x, y = _subset(ctx, HESSIAN_EXAMPLES)
    params, hvp = loss_hvp(ctx.model, x, y, ctx.batch_size)
    gen = torch.Generator().manual_seed(ctx.options.seed)
    return top_eigenvalue(hvp, params, POWER_ITERATIONS, generator=gen)


@measure("hessian_trace", group="flatness", needs=DATA, cost="E")
def hessian_trace(ctx: MeasureContext) -> float:
    """Tr(∇²L) by Hutchinson's estimator (mean vᵀHv over 30 Rademacher vectors; pyhessian's
    method), on a seeded subset of 512 training examples; its standard error goes to
    ``ctx.details["hessian_trace_stderr"]``."""
    x, y = _subset(ctx, HESSIAN_EXAMPLES)
    params, hvp = loss_hvp(ctx.model, x, y, ctx.batch_size)
    gen = torch.Generator().manual_seed(ctx.options.seed)
    value, stderr = hutchinson_trace(hvp, params, HUTCHINSON_SAMPLES, gen)
    ctx.details["hessian_trace_stderr"] = stderr
    return value


@torch.no_grad()
def _mean_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device,
               batch_size: int) -> float:
    total = 0.0
    for i in range(0, len(x), batch_size):
        xb, yb = x[i : i + batch_size].to(device), y[i : i + batch_size].to(device)
        total += float(nn.functional.cross_entropy(model(xb), yb, reduction="sum"))
    return total / len(x)


def grid_point_generator(seed: int, layer: int, alpha_index: int, sigma_index: int
                         ) -> torch.Generator:
    """The noise of one grid point has its own seed, so skipping points changes nothing."""
    return torch.Generator().manual_seed(
        ((seed * 1_000_003 + layer) * 101 + alpha_index) * 101 + sigma_index)


@torch.no_grad()
def perturbed_loss(model: nn.Module, layer: nn.Module, base: torch.Tensor, sigma: float,
                   draws: int, gen: torch.Generator, x: torch.Tensor, y: torch.Tensor,
                   device: torch.device, batch_size: int) -> float:
    """Mean loss over ``draws`` draws of ``layer.weight = base + N(0, σ²)`` (``model`` holds
    ``layer``; its weight is left changed)."""
    losses = []
    for _ in range(draws):
        layer.weight.copy_(base + torch.randn(base.shape, generator=gen).to(base) * sigma)
        losses.append(_mean_loss(model, x, y, device, batch_size))
    return sum(losses) / draws


@torch.no_grad()
def module_criticality_scores(
    model: nn.Module,
    init_model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    device: torch.device,
    batch_size: int = 1024,
    seed: int = 0,
    draws: int = CRITICALITY_DRAWS,
    grid: int = CRITICALITY_GRID,
    rtol: float = CRITICALITY_RTOL,
) -> dict[str, float]:
    """Criticality of each Linear/Conv weight (Chatterji et al. 2020): the least
    (α/σ)² ‖W_F − W_0‖_F² over the grid α ∈ {0, 1/g, …, 1} × σ ∈ rms(W_F)·logspace(−3, 0, g+1)
    such that the mean training loss with W = (1−α)W_0 + αW_F + N(0, σ²) (``draws`` draws, other
    weights final) is at most ``rtol`` × the final loss; ``inf`` when no grid point is feasible.
    The α grid, draws and condition follow the reference code (meta-dataset
    ``criticality.py``); its σ grid, linspace(1e-16, 1, 11) in absolute units, leaves nothing
    between 1e-16 and 0.1 and makes small networks' scores ~1e32, so gengap spaces σ
    logarithmically relative to the layer's weight scale. Grid points that cannot beat the best
    value found are skipped, which leaves the result unchanged."""
    final_loss = _mean_loss(model, x, y, device, batch_size)
    work = copy.deepcopy(model)
    finals = dict(weight_layers(model))
    inits = dict(weight_layers(init_model))
    alphas = torch.linspace(0, 1, grid + 1).tolist()
    scores = {}
    for index, (name, layer) in enumerate(weight_layers(work)):
        w_final = finals[name].weight.detach().clone()
        w_init = inits[name].weight.detach().to(w_final)
        dist2 = float(((w_final - w_init) ** 2).sum())
        rms = float(w_final.pow(2).mean().sqrt()) or 1.0
        sigmas = (rms * torch.logspace(-CRITICALITY_DECADES, 0, grid + 1)).tolist()
        best = math.inf
        for ai, a in enumerate(alphas):
            base = (1 - a) * w_init + a * w_final
            for si in reversed(range(len(sigmas))):  # larger σ first: a smaller score
                score = (a / sigmas[si]) ** 2 * dist2
                if score >= best:
                    break
                gen = grid_point_generator(seed, index, ai, si)
                if perturbed_loss(work, layer, base, sigmas[si], draws, gen, x, y, device,
                                  batch_size) <= rtol * final_loss:
                    best = score
                    break
        layer.weight.copy_(w_final)
        scores[name] = best
    return scores


@measure(
    "module_criticality", group="flatness", needs=("weights", "init_weights", "train_data"),
    cost="F",
)
def module_criticality(ctx: MeasureContext) -> float:
    """Σ_i μ_i, μ_i = min (α/σ)² ‖W_i^F − W_i^0‖_F² s.t. E_u L(W_i = (1−α)W_i^0 + αW_i^F + u)
    ≤ 1.01 L_final, u ~ N(0, σ²I) (Chatterji et al. 2020), over an 11x11 grid (α linear in
    [0, 1], σ log-spaced over rms(W_i^F)·[10⁻³, 1]) with 5 draws per point, on a seeded subset
    of 512 training examples."""
    x, y = _subset(ctx, CRITICALITY_EXAMPLES)
    scores = module_criticality_scores(
        ctx.model, ctx.require_init(), x, y, ctx.device, ctx.batch_size, ctx.options.seed
    )
    ctx.details["module_criticality"] = scores
    return sum(scores.values())
