"""Flatness measures: relative flatness (Petzka et al. 2021), module criticality (Chatterji,
Neyshabur & Sedghi 2020), and the training loss Hessian's top eigenvalue and trace (as pyhessian
computes them). Curvature is taken of the mean training cross-entropy, model in eval mode."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from functools import cache, partial

import scipy.stats
import torch
from torch import nn

from gengap.measures.context import MeasureContext
from gengap.measures.exact_trace_checks import exact_trace_obstacle
from gengap.measures.features import head_matrix, weight_layers
from gengap.measures.gauss_newton_trace import NotExact, gauss_newton_trace
from gengap.measures.hessian import Lanczos, hutchinson_trace, lanczos, loss_hvp
from gengap.measures.layers import forward_copy
from gengap.measures.patches import patch_obstacle
from gengap.measures.precision import autocast
from gengap.measures.registry import NotApplicable, measure
from gengap.measures.relative_flatness import (
    LayerCurvature,
    feature_layer,
    relative_flatness_normalized_head,
    relative_flatness_of_layer,
)
from gengap.measures.smoothness import smooth_steps
from gengap.measures.streams import measure_generator
from gengap.models.channels_last import channels_last_safe

DATA = ("weights", "train_data")
HESSIAN_EXAMPLES = 512  # training examples the Hessian measures use (a seeded subset)
HESSIAN_BATCH = 32  # examples per double-backward pass (bench NiN: 6.1 s per product, 64: 7.5)
RELATIVE_FLATNESS_BATCH = 64  # examples per batch of the per-class Jacobians (cache-sized)
HUTCHINSON_SAMPLES = 10  # projected Rademacher vectors (the Lanczos space taken exactly)
GAUSS_NEWTON_BATCH = 16  # examples per batch of the exact trace (bench NiN: faster than 32, 64)
# one backward pass per class: with 10 classes the exact trace took a third of the estimate's
# time on the bench NiN; with 100, on a small CNN, 9.1 s against the estimate's 5.4 s
EXACT_TRACE_MAX_CLASSES = 32
HESSIAN_ITERATIONS = 100  # most Lanczos steps (Hessian-vector products)
# pyhessian's tolerance; the Ritz value's error is of the order of the residual squared over the
# spectral gap (bench NiN: 7 products, θ within 1.2e-7 of the value 3 steps later; 1e-4: 8)
HESSIAN_TOL = 1e-3
CRITICALITY_EXAMPLES = 512
CRITICALITY_DRAWS = 10  # noise draws per (α, σ) grid point, as in the reference code
CRITICALITY_GRID = 10  # α takes 11 values in [0, 1]; σ the 11 + 11 of criticality_sigmas
CRITICALITY_DECADES = 3  # the refining σ run over rms(W_F) · [10^-3, 1]
CRITICALITY_RTOL = 1.01  # a grid point is feasible when mean perturbed loss ≤ 1.01 × final
CRITICALITY_CHUNK = 128  # examples per forward: an infeasible point is rejected after one
# a row whose loss without noise is 10 % over the limit is skipped: on 60 small MLPs trained
# near the limit (2 and 10 draws) the scores equal those of a margin of 2; one of 1 % changed
# 5 of 120 at 2 draws
CRITICALITY_SCREEN_MARGIN = 1.1
CRITICALITY_REJECT_RISK = 1e-4  # per look, of rejecting a point whose full mean is feasible


@measure("relative_flatness", group="flatness", needs=DATA, cost="E")
def relative_flatness(ctx: MeasureContext) -> float:
    """κ_Tr = Σ_{s,s′} ⟨w_s, w_s′⟩ Tr(H_{s,s′}) (Petzka et al. 2021) of the layer W that
    produces the penultimate features (the last Linear/Conv layer before the head; rows w_s its
    neurons' incoming weights), H_{s,s′} the Hessian block of the mean training cross-entropy
    in rows w_s, w_s′. Computed exactly on the whole training set, without forming the Hessian,
    as (1/N) Σ_i Tr((diag p_i − p_i p_iᵀ) M_i) with M_i built from the per-example Jacobian of
    the logits in the layer's output (one backward pass per class through the layers after W);
    exact when those layers are piecewise linear (ReLU, pooling, BatchNorm in eval mode), the
    Gauss-Newton part of the Hessian after tanh, GELU or LayerNorm (the smooth modules found
    after W are listed in ``ctx.details["relative_flatness_smooth_after"]``). Invariant to
    rescaling W's neurons, which is all that folding the BatchNorm after W into it does: it is
    computed on the faster forward copy (``ctx.forward_model``). Planned (``ctx.plan``), it
    rides along the logits pass where it can (:func:`relative_flatness_rider`)."""
    x, _ = ctx.require_data()
    probe = x[:1].to(ctx.device)
    name, layer = feature_layer(ctx.model, probe)
    ctx.details["relative_flatness_layer"] = name
    # where modules after the layer are smooth, the value is the Gauss-Newton part
    ctx.details["relative_flatness_smooth_after"] = smooth_steps(ctx.model, probe, after=layer)
    rode = ctx.pass_extras.get("relative_flatness")
    if rode is not None:  # computed in the logits pass (MeasureContext.plan)
        return rode
    model, fast = _relative_flatness_layer(ctx, name)
    return relative_flatness_of_layer(model, fast, x, ctx.device,
                                      min(ctx.batch_size, RELATIVE_FLATNESS_BATCH))


def _relative_flatness_layer(ctx: MeasureContext, name: str) -> tuple[nn.Module, nn.Module]:
    """The model relative flatness differentiates and its layer ``name``: W with its BatchNorm
    folded in, channels-last on the CPU (``ctx.forward_model``). Only the layers after W are
    differentiated, so a model whose channels-last backward could crash keeps its own copy."""
    model = ctx.forward_model if channels_last_safe(ctx.model) else ctx.model
    return model, dict(model.named_modules())[name]


def relative_flatness_rider(ctx: MeasureContext) -> tuple[LayerCurvature, int] | None:
    """Relative flatness's curvature sum, to ride along the logits pass over
    ``ctx.forward_model``, and the batch size that pass must then take (the measure's own), or
    None where it cannot ride: no layer before the head, a layer without patches, a model that
    keeps its own copy, or Jacobians that need a smaller batch than the measure's usual one.
    Riding saves the measure's own forward pass over the training set and gives the value it
    would compute alone (the same batches, layer and arithmetic); the logits then come from
    those batches (the same up to float rounding)."""
    x, _ = ctx.require_data()
    probe = x[:1].to(ctx.device)
    try:
        name, _ = feature_layer(ctx.model, probe)
    except NotApplicable:
        return None
    model, layer = _relative_flatness_layer(ctx, name)
    if model is not ctx.forward_model or patch_obstacle(layer) is not None:
        return None
    rider, usual = LayerCurvature(layer), min(ctx.batch_size, RELATIVE_FLATNESS_BATCH)
    with rider.attached(model):
        batch = rider.batch_size(model, probe, usual)
    return (rider, batch) if batch == usual else None


@measure("relative_flatness_head", group="flatness", needs=DATA, cost="C")
def relative_flatness_head(ctx: MeasureContext) -> float:
    """κ_Tr = Σ_{s,s′} ⟨w̃_s, w̃_s′⟩ Tr(H̃_{s,s′}) of the head on the penultimate features φ
    normalized to unit standard deviation, φ̃_j = φ_j/σ_j and W̃_{:,j} = σ_j W_{:,j} (Petzka
    et al.'s experimental protocol), in closed form for softmax cross-entropy:
    (1/N) Σ_i ‖φ̃_i‖² Tr(W̃W̃ᵀ(diag p_i − p_i p_iᵀ)); one forward pass. The normalization makes
    it invariant to rescaling the penultimate neurons."""
    head = head_matrix(ctx.model, ctx.example_input)
    return relative_flatness_normalized_head(ctx.penultimate, ctx.logits, head)


def _subset(ctx: MeasureContext, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = ctx.require_data()
    if len(x) <= size:
        return x, y
    # not the run's first-epoch order, which a generator seeded as the run would replay
    idx = torch.randperm(len(x), generator=measure_generator(ctx.options.seed, "subset"))[:size]
    return x[idx], y[idx]


def hessian_lanczos(ctx: MeasureContext) -> tuple[Lanczos, Callable, list[torch.Tensor]]:
    """The Lanczos run on the training-loss Hessian of the seeded 512-example subset, with
    that Hessian's product and parameters (``ctx.hessian_lanczos`` shares it: the top
    eigenvalue is its value, the trace deflates by its basis)."""
    x, y = _subset(ctx, HESSIAN_EXAMPLES)
    params, hvp = loss_hvp(ctx.model, x, y, min(ctx.batch_size, HESSIAN_BATCH))
    gen = torch.Generator().manual_seed(ctx.options.seed)
    return lanczos(hvp, params, HESSIAN_ITERATIONS, HESSIAN_TOL, gen), hvp, params


@measure("hessian_top_eigenvalue", group="flatness", needs=DATA, cost="E")
def hessian_top_eigenvalue(ctx: MeasureContext) -> float:
    """λ_max(∇²L): the largest eigenvalue of the training-loss Hessian by the Lanczos method on
    Hessian-vector products (to a relative residual of 1e-3; pyhessian uses power iteration),
    on a seeded subset of 512 examples."""
    run = ctx.hessian_lanczos[0]
    ctx.details["hessian_lanczos_steps"] = len(run.diagonal)
    return run.value


@measure("hessian_trace", group="flatness", needs=DATA, cost="E")
def hessian_trace(ctx: MeasureContext) -> float:
    """Tr(∇²L) on the same 512 examples. Exact for a piecewise-linear network whose layers
    each run once (every ReLU family of gengap) with at most 32 classes: the Gauss-Newton
    trace, which equals it there, as a sum of per-example squared gradient norms
    (:mod:`gengap.measures.gauss_newton_trace`; when it applies:
    :mod:`gengap.measures.exact_trace_checks`).
    Otherwise (tanh, GELU, LayerNorm, attention...) the trace of the Hessian projected on the
    Lanczos space of ``hessian_top_eigenvalue`` (exact) plus Hutchinson's estimator on its
    orthogonal complement (mean ṽᵀHṽ over 10 projected Rademacher vectors ṽ), unbiased. Its
    standard error (0 when exact) goes to ``ctx.details["hessian_trace_stderr"]``, and what
    ruled out the exact trace to ``ctx.details["hessian_trace_estimated_because"]``."""
    x, _ = _subset(ctx, HESSIAN_EXAMPLES)
    probe = x[:2].to(ctx.device)
    with torch.no_grad():
        classes = ctx.model.eval()(probe.clone()).shape[1]  # a model may work in place
    if classes > EXACT_TRACE_MAX_CLASSES:
        obstacle = (f"{classes} classes: the exact trace's backward pass per class would cost "
                    "more than the estimate")
    else:
        obstacle = exact_trace_obstacle(ctx.model, probe)
    if obstacle is None:
        try:
            value = gauss_newton_trace(ctx.model, x, ctx.device,
                                       min(ctx.batch_size, GAUSS_NEWTON_BATCH))
        except NotExact as err:  # met on other examples than the probe's
            obstacle = str(err)
        else:
            ctx.details["hessian_trace_stderr"] = 0.0
            return value
    ctx.details["hessian_trace_estimated_because"] = obstacle
    run, hvp, params = ctx.hessian_lanczos
    gen = torch.Generator().manual_seed(ctx.options.seed + 1)
    value, stderr = hutchinson_trace(hvp, params, HUTCHINSON_SAMPLES, gen, deflate=run)
    ctx.details["hessian_trace_stderr"] = stderr
    return value


@torch.no_grad()
def _mean_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device,
               batch_size: int) -> float:
    total = 0.0
    for i in range(0, len(x), batch_size):
        total += _loss_sum(model, x[i : i + batch_size].to(device),
                           y[i : i + batch_size].to(device))
    return total / len(x)


def _loss_sum(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Summed cross-entropy, taken in float32 at least (logits computed under autocast are
    bfloat16)."""
    logits = model(x)
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    return float(nn.functional.cross_entropy(logits, y, reduction="sum"))


def grid_point_generator(seed: int, layer: int, alpha_index: int, sigma_index: int
                         ) -> torch.Generator:
    """The noise of one grid point has its own seed, so skipping points changes nothing."""
    return torch.Generator().manual_seed(
        ((seed * 1_000_003 + layer) * 101 + alpha_index) * 101 + sigma_index)


@torch.no_grad()
def perturbed_loss(model: nn.Module, layer: nn.Module, base: torch.Tensor, sigma: float,
                   draws: int, gen: torch.Generator, x: torch.Tensor, y: torch.Tensor,
                   device: torch.device, batch_size: int, limit: float | None = None,
                   risk: float | None = None, scale: torch.Tensor | None = None) -> float:
    """Mean loss over ``draws`` draws of ``layer.weight = base + N(0, σ²)`` (``model`` holds
    ``layer``; its weight is left changed; with ``scale``, the weight set is ``scale`` times
    that: a layer with a BatchNorm folded into it, :func:`fold_batchnorm_with_scales`). With
    ``limit``, stops as soon as the losses summed so far (each ≥ 0) already put the mean
    above it, and returns that partial sum over the whole count: a value above ``limit``
    whenever the full mean is, without the remaining draws and batches (an infeasible grid
    point usually costs one batch). With ``risk`` too, it also stops after a draw once
    :func:`surely_above` judges that the full mean will exceed ``limit``, and returns the mean
    of the draws done (then above ``limit``); a value at most ``limit`` is always the full
    mean. A draw too small to change any weight in floating point (σ = 1e-16 of the reference
    grid) has the unperturbed loss, computed once."""
    budget = math.inf if limit is None else limit * draws * len(x)
    total = 0.0
    done: list[float] = []  # each finished draw's mean loss
    unperturbed: float | None = None  # the loss at ``base``, once a draw has needed it
    for _ in range(draws):
        weight = base + torch.randn(base.shape, generator=gen).to(base) * sigma
        if unperturbed is not None and torch.equal(weight, base):
            draw_total = unperturbed
        else:
            layer.weight.copy_(weight if scale is None else weight * scale)
            draw_total = 0.0
            for i in range(0, len(x), batch_size):
                draw_total += _loss_sum(model, x[i : i + batch_size].to(device),
                                        y[i : i + batch_size].to(device))
                if total + draw_total > budget:
                    return (total + draw_total) / (draws * len(x))
            if torch.equal(weight, base):
                unperturbed = draw_total
        total += draw_total
        if total > budget:
            return total / (draws * len(x))
        done.append(draw_total / len(x))
        if risk is not None and limit is not None and surely_above(done, limit, draws, risk):
            return statistics.fmean(done)
    return total / (draws * len(x))


def surely_above(losses: list[float], limit: float, draws: int, risk: float) -> bool:
    """Whether the mean of ``draws`` i.i.d. draws' losses will exceed ``limit``, judged from the
    first k = ``len(losses)`` (2 ≤ k < ``draws``): the full mean stays at most ``limit`` only
    if the other draws average at most (draws·limit − Σ losses)/(draws − k), and the one-sided
    Student-t prediction bound for their mean, m − t(1 − risk, k − 1)·s·√(1/k + 1/(draws − k))
    (m, s: the draws' mean and standard deviation), is above that. If the losses are normal,
    a point whose full mean is at most ``limit`` is so judged with probability at most
    ``risk`` at each k."""
    k = len(losses)
    if not 2 <= k < draws:
        return False
    mean, sd = statistics.fmean(losses), statistics.stdev(losses)
    allowed = (draws * limit - k * mean) / (draws - k)
    return mean - _t_quantile(1 - risk, k - 1) * sd * math.sqrt(1 / k + 1 / (draws - k)) > allowed


@cache
def _t_quantile(level: float, dof: int) -> float:
    return float(scipy.stats.t.ppf(level, dof))


def criticality_sigmas(rms: float, grid: int = CRITICALITY_GRID) -> list[float]:
    """The σ values tried, ascending: the reference code's linspace(1e-16, 1, grid + 1) and
    ``grid + 1`` values log-spaced over rms·[10⁻³, 1] (rms: the layer's final weights'
    root mean square), kept within the paper's domain σ ≤ 1. The reference grid alone has no σ
    between 1e-16 and 0.1, where layers with small weights become feasible, and leaves their
    score at ~1e32; the refinement only adds candidates, so the minimum can only get closer to
    the paper's minimum over all σ ∈ (0, 1]."""
    reference = torch.linspace(1e-16, 1, grid + 1, dtype=torch.float64)
    refined = rms * torch.logspace(-CRITICALITY_DECADES, 0, grid + 1, dtype=torch.float64)
    return sorted(set(reference.tolist()) | {s for s in refined.tolist() if 0 < s <= 1})


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
    risk: float | None = CRITICALITY_REJECT_RISK,
    autocast_dtype: torch.dtype | None = None,
) -> dict[str, float]:
    """Criticality of each Linear/Conv weight (Chatterji et al. 2020): the least
    (α/σ)² ‖W_F − W_0‖_F² over the grid α ∈ {0, 1/g, …, 1} × σ ∈ :func:`criticality_sigmas`
    such that the mean training loss with W = (1−α)W_0 + αW_F + N(0, σ²) (``draws`` draws, other
    weights final) is at most ``rtol`` × the final loss; ``inf`` when no grid point is feasible.
    The α grid, draws, condition and the reference σ values follow the reference code
    (meta-dataset ``criticality.py``, sigma_ratio 1); the added log-spaced σ values are
    gengap's. Points that cannot beat the best value found are never evaluated, and a point's
    draws stop once their losses so far already exceed the allowed total (losses are ≥ 0):
    both exact. A point is feasible only on its full mean, as in the reference; with ``risk``
    (default 1e-4) it is also rejected once its finished draws make a Student-t prediction
    bound say the full mean will exceed the limit (:func:`surely_above`): a feasible point is
    so lost with probability at most ``risk`` per draw after the first (≤ 8e-4 over ten
    draws), if draws' losses are normal (``risk=None``: no such rejection). This is what makes
    rows a little above the limit cheap: there every small σ leaves ten nearly equal draws,
    which the exact rule rejects only after limit/loss of the work, the bound after about
    three draws. Rows are searched from α = 1 down: the final weights are feasible at small
    σ, and the score found there leaves only larger σ worth trying in the rows after it. One
    assumption saves most of the rest: a row of α whose unperturbed mean loss (σ = 1e-16, the
    reference grid's least σ) is more than 10 % above the allowed one is skipped, taken as
    infeasible at every σ: noise would have to lower the mean loss by over 9 %, where to second
    order it raises it by σ²/2 · Tr of the layer's Hessian block, which is ≥ 0 wherever the
    loss is convex in the layer (within each ReLU region, for cross-entropy); rows within 10 %
    are searched, since there ten draws' spread can put the mean under the limit. Other rows
    are scanned down from their largest σ to the first feasible one, not bisected: near the
    limit ten draws' mean loss need not grow with σ. With ``risk=None``, where no skipped row
    holds a feasible point the result is the whole grid's minimum (up to rounding: losses are
    summed in batches of 128, on a copy of the network with its BatchNorm folded into the
    layers before it). In an ``nn.Sequential`` the output of the layers before the perturbed
    one is computed once per layer, not once per draw. With ``autocast_dtype`` every loss
    pass, the final loss's too, runs under autocast to it (:mod:`gengap.measures.precision`);
    the folded copy is built and checked before, in the model's own arithmetic."""
    # the perturbed weight is scaled as a BatchNorm folded into its layer would scale it
    work, scales = forward_copy(model, x[:2].to(device))
    chunk = min(batch_size, CRITICALITY_CHUNK)
    finals = dict(weight_layers(model))
    inits = dict(weight_layers(init_model))
    scores = {}
    with autocast(device, autocast_dtype):
        final_loss = _mean_loss(work, x, y, device, chunk)  # rounded as the perturbed ones
        for index, (name, layer) in enumerate(weight_layers(work)):
            # the layers before this one are final: their output is computed once per layer
            net, inputs = _suffix(work, layer, x, device, chunk)
            w_final = finals[name].weight.detach().clone()
            w_init = inits[name].weight.detach().to(w_final)
            scale = scales.get(name)
            scores[name] = _layer_criticality(
                net, layer, w_init, w_final, inputs, y, device, chunk, rtol * final_loss, draws,
                grid, partial(grid_point_generator, seed, index), risk, scale)
            layer.weight.copy_(w_final if scale is None else w_final * scale)
    return scores


@torch.no_grad()
def _layer_criticality(net: nn.Module, layer: nn.Module, w_init: torch.Tensor,
                       w_final: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
                       device: torch.device, chunk: int, limit: float, draws: int, grid: int,
                       generator: Callable[[int, int], torch.Generator],
                       risk: float | None, scale: torch.Tensor | None = None) -> float:
    """One layer's least feasible score over the (α, σ) grid (see
    :func:`module_criticality_scores`); ``generator(α index, σ index)`` seeds a point's noise;
    ``scale``: the factor of a BatchNorm folded into ``layer`` (see :func:`perturbed_loss`)."""
    dist2 = float(((w_final - w_init) ** 2).sum())
    sigmas = criticality_sigmas(float(w_final.pow(2).mean().sqrt()) or 1.0, grid)

    def loss(ai: int, si: int, base: torch.Tensor, cap: float) -> float:
        """The point's mean loss, or a value above ``cap`` as soon as it must exceed it."""
        return perturbed_loss(net, layer, base, sigmas[si], draws, generator(ai, si), x, y,
                              device, chunk, cap, risk, scale)

    best = math.inf
    alphas = torch.linspace(0, 1, grid + 1).tolist()
    # from the final weights back to the initial ones: α = 1 is feasible at small σ, and the
    # best score it gives rules out the small σ of every row after it
    for ai in reversed(range(len(alphas))):
        a = alphas[ai]
        base = (1 - a) * w_init + a * w_final
        # the σ values whose score could beat the best so far, ascending
        candidates = [si for si, s in enumerate(sigmas) if (a / s) ** 2 * dist2 < best]
        if not candidates:
            continue
        # a row over the limit by the margin without noise (σ = 1e-16: one pass over the data)
        # is taken as infeasible throughout (noise lowering the mean loss that much is not
        # seen; on the bench NiN such rows were 2/3 of the whole grid's cost);
        # near the limit, noise can make a larger σ feasible where a smaller one is not, so
        # such a row is scanned whole
        screen = loss(ai, 0, base, CRITICALITY_SCREEN_MARGIN * limit)
        if screen > CRITICALITY_SCREEN_MARGIN * limit:
            continue
        if a == 0 and screen <= limit:  # rewinding to the initialization is feasible: 0
            return 0.0
        # the largest feasible σ scores least: scan down from the top
        chosen = next((si for si in reversed(candidates)
                       if (screen if si == 0 else loss(ai, si, base, limit)) <= limit), None)
        if chosen is not None:
            best = (a / sigmas[chosen]) ** 2 * dist2
    return best


@torch.no_grad()
def _suffix(model: nn.Module, layer: nn.Module, x: torch.Tensor, device: torch.device,
            batch_size: int) -> tuple[nn.Module, torch.Tensor]:
    """(the modules from ``layer`` on, their input on ``x``) when ``model`` runs as an
    ``nn.Sequential`` holding ``layer`` as a direct child (the same computation split in two);
    else (``model``, ``x``). The parts are plain ``nn.Sequential`` of the same modules: a
    subclass's own constructor (the converted Keras models') cannot rebuild a slice."""
    if not isinstance(model, nn.Sequential) or type(model).forward is not nn.Sequential.forward:
        return model, x
    children = list(model)
    at = next((i for i, m in enumerate(children) if m is layer), None)
    if not at:  # not a direct child, or the first one: nothing to skip
        return model, x
    head = nn.Sequential(*children[:at])
    inputs = torch.cat([head(x[i : i + batch_size].to(device)).cpu()
                        for i in range(0, len(x), batch_size)])
    return nn.Sequential(*children[at:]), inputs


@measure(
    "module_criticality", group="flatness", needs=("weights", "init_weights", "train_data"),
    cost="F",
)
def module_criticality(ctx: MeasureContext) -> float:
    """Σ_i μ_i, μ_i = min (α/σ)² ‖W_i^F − W_i^0‖_F² s.t. E_u L(W_i = (1−α)W_i^0 + αW_i^F + u)
    ≤ 1.01 L_final, u ~ N(0, σ²I) (Chatterji et al. 2020), over a grid: α ∈ {0, 0.1, …, 1}, σ
    the reference code's {1e-16, 0.1, …, 1} plus 11 values log-spaced over rms(W_i^F)·[10⁻³, 1]
    (all σ ≤ 1, the paper's domain); 10 noise draws per point, a seeded subset of 512 training
    examples; searched as :func:`module_criticality_scores` says (from α = 1 down; rows of α
    over 10 % above the limit without noise are skipped; a point is rejected early when a
    Student-t prediction bound on its finished draws, at risk 1e-4 per draw, puts its 10-draw
    mean above the limit)."""
    if not weight_layers(ctx.model):
        raise NotApplicable("no Linear or Conv layer: module criticality perturbs their weights")
    x, y = _subset(ctx, CRITICALITY_EXAMPLES)
    scores = module_criticality_scores(
        ctx.model, ctx.require_init(), x, y, ctx.device, ctx.batch_size, ctx.options.seed,
        autocast_dtype=ctx.monte_carlo_passes())
    ctx.details["module_criticality"] = scores
    return sum(scores.values())
