"""Heavy-tailed self-regularization measures (Martin & Mahoney 2021, WeightWatcher): the mean
over layers, as WeightWatcher's ``get_summary``, of per-layer metrics of the ESD of WᵀW (conv
kernels one slice per kernel position, pooled). BatchNorm is folded in first. The per-layer
table is :func:`gengap.measures.spectral.spectral_table` (``gengap spectra`` in the shell)."""

from __future__ import annotations

import math

from gengap.measures.context import MeasureContext
from gengap.measures.registry import NotApplicable, measure
from gengap.measures.spectral import summarize
from gengap.measures.spectral.table import MIN_EVALS

GROUP = "heavy_tailed"


def _mean(ctx: MeasureContext, column: str) -> float:
    table = ctx.spectra
    if not len(table) or (table["num_evals"] < MIN_EVALS).all():
        raise NotApplicable(f"no layer has {MIN_EVALS} eigenvalues or more, and "
                            "WeightWatcher's summary leaves smaller layers out")
    value = summarize(table)[column]
    if math.isnan(value):
        raise NotApplicable(f"{column} has no value on any layer with {MIN_EVALS} "
                            "eigenvalues or more (a failed fit, or a zero spectrum)")
    return value


@measure("alpha", group=GROUP, cost="B")
def alpha(ctx: MeasureContext) -> float:
    """⟨α⟩: the power-law exponent of each layer's ESD tail, ρ(λ) ∝ λ^{−α} for λ ≥ λ_min, by
    Clauset's MLE with λ_min chosen by the KS distance; mean over layers (Martin & Mahoney)."""
    return _mean(ctx, "alpha")


@measure("alpha_weighted", group=GROUP, cost="B")
def alpha_weighted(ctx: MeasureContext) -> float:
    """⟨α̂⟩ = ⟨α · log10 λ_max⟩ over layers ("alpha-hat", Martin, Peng & Mahoney 2021)."""
    return _mean(ctx, "alpha_weighted")


@measure("log_alpha_norm", group=GROUP, cost="B")
def log_alpha_norm(ctx: MeasureContext) -> float:
    """⟨log10 Σ_i λ_i^α⟩ over layers: the log Schatten α-norm (WeightWatcher)."""
    return _mean(ctx, "log_alpha_norm")


@measure("log_norm", group=GROUP, cost="B")
def log_norm(ctx: MeasureContext) -> float:
    """⟨log10 Σ_i λ_i⟩ = ⟨log10 ‖W‖_F²⟩ over layers (WeightWatcher; conv slices scaled by
    1/√2 as its conv2d_norm does)."""
    return _mean(ctx, "log_norm")


@measure("log_spectral_norm", group=GROUP, cost="B")
def log_spectral_norm(ctx: MeasureContext) -> float:
    """⟨log10 λ_max⟩ over layers (λ_max of the pooled ESD; WeightWatcher)."""
    return _mean(ctx, "log_spectral_norm")


@measure("stable_rank", group=GROUP, cost="B")
def stable_rank(ctx: MeasureContext) -> float:
    """⟨Σ_i λ_i / λ_max⟩ over layers (WeightWatcher's stable rank)."""
    return _mean(ctx, "stable_rank")


@measure("mp_softrank", group=GROUP, cost="B")
def mp_softrank(ctx: MeasureContext) -> float:
    """⟨λ₊ / λ_max⟩ over layers: the Marchenko–Pastur bulk edge of the fitted ESD over its
    largest eigenvalue, both after rescaling to mean 1 (WeightWatcher's mp_fit)."""
    return _mean(ctx, "mp_softrank")


@measure("rand_distance", group=GROUP, cost="B")
def rand_distance(ctx: MeasureContext) -> float:
    """⟨JS(λ, λ^rand)⟩ over layers: the Jensen–Shannon distance between the sorted ESD and that
    of the same matrix with its entries shuffled (WeightWatcher's randomize=True)."""
    return _mean(ctx, "rand_distance")
