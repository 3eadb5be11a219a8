"""Output- and margin-based measures (Jiang et al. 2020, appendix C.2 and C.3). The margin γ
is the 10th percentile of f(x)[y] − max_{j≠y} f(x)[j] over the training set."""

from __future__ import annotations

import math

import torch

from gengap.measures.context import MeasureContext
from gengap.measures.registry import measure

DATA = ("weights", "train_data")


@measure("cross_entropy", group="output", needs=DATA, cost="C")
def cross_entropy(ctx: MeasureContext) -> float:
    """(1/m) Σ_i ℓ_CE(f(x_i), y_i): the training cross-entropy (Jiang et al. 2020, eq. 21)."""
    _, y = ctx.require_data()
    return float(torch.nn.functional.cross_entropy(ctx.logits.double(), y.to(ctx.device)))


@measure("margin", group="output", needs=DATA, cost="C")
def margin(ctx: MeasureContext) -> float:
    """γ: the 10th-percentile output margin on the training set (absolute value)."""
    return ctx.gamma


@measure("inverse_margin", group="output", needs=DATA, cost="C")
def inverse_margin(ctx: MeasureContext) -> float:
    """1/γ² (Jiang et al. 2020, eq. 22); ``inf`` when γ = 0."""
    return _over_margin(1.0, ctx)


@measure("prod_of_spec_over_margin", group="norm", needs=DATA, cost="B")
def prod_of_spec_over_margin(ctx: MeasureContext) -> float:
    """Π_i ‖W_i‖₂² / γ² (Jiang et al. 2020, eq. 31)."""
    return _over_margin(ctx.value("prod_of_spec"), ctx)


@measure("path_norm_over_margin", group="norm", needs=DATA, cost="C")
def path_norm_over_margin(ctx: MeasureContext) -> float:
    """Σ_j f_{w²}(1)[j] / γ² (Jiang et al. 2020, eq. 43)."""
    return _over_margin(ctx.value("path_norm"), ctx)


def _over_margin(value: float, ctx: MeasureContext) -> float:
    """value / γ², ``inf`` when γ = 0 (as the log measures give +inf there)."""
    return value / ctx.gamma**2 if ctx.gamma > 0 else math.inf


@measure("output_entropy", group="output", needs=DATA, cost="C")
def output_entropy(ctx: MeasureContext) -> float:
    """−(1/m) Σ_i Σ_j p_j(x_i) log p_j(x_i): mean entropy of the softmax outputs on the training
    set (Jiang et al. 2020, appendix C.2)."""
    log_p = torch.log_softmax(ctx.logits.double(), dim=1)
    return float(-(log_p.exp() * log_p).sum(dim=1).mean())
