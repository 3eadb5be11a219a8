"""Optimization-based measures (Jiang et al. 2020, appendix C.5): how fast training went, read
from the run's records, and the noise of minibatch gradients at the final weights."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from gengap.errors import GengapError
from gengap.measures.context import MeasureContext
from gengap.measures.registry import NotApplicable, measure
from gengap.measures.streams import measure_generator


def _steps(ctx: MeasureContext, key: str) -> float:
    """The steps of the run's records at ``key`` (``steps_to_ce_<level>``); the reason for a
    NaN where training never reached that level."""
    records = ctx.require_trajectory()
    value = records.get(key)
    if value is None or math.isnan(float(value)):
        if records.get("steps") is None:  # an imported network: no training records at all
            raise NotApplicable("the run has no training records (an imported network)")
        level = key.removeprefix("steps_to_ce_")
        raise NotApplicable(f"the run's records show training cross-entropy never reached "
                            f"{level}")
    return float(value)


@measure("optim_steps_to_0.1", group="optimization", needs=("trajectory",), cost="G")
def steps_to_ce_01(ctx: MeasureContext) -> float:
    """Optimizer steps until the training cross-entropy first reached 0.1 (checked after each
    epoch; NaN when it never did) (Jiang et al. 2020, C.5)."""
    return _steps(ctx, "steps_to_ce_0.1")


@measure("optim_steps_0.1_to_0.01", group="optimization", needs=("trajectory",), cost="G")
def steps_from_01_to_001(ctx: MeasureContext) -> float:
    """Optimizer steps from training cross-entropy 0.1 to 0.01 (NaN when either level was
    never reached) (Jiang et al. 2020, C.5)."""
    start = _steps(ctx, "steps_to_ce_0.1")  # its reason first: 0.01 comes after it
    return _steps(ctx, "steps_to_ce_0.01") - start


@measure("grad_noise", group="optimization", needs=("weights", "train_data", "gradients"),
         cost="D")
def grad_noise(ctx: MeasureContext) -> float:
    """E‖g_B − E g_B‖²: the variance (trace of the covariance) of the minibatch gradient of the
    training cross-entropy at the final weights, over all trainable parameters, estimated from
    ``grad_batches`` disjoint random minibatches of ``grad_batch`` examples (at most half the
    training set) as
    1/(K−1) Σ_k ‖g_k − ḡ‖² (unbiased). The network is in eval mode (BatchNorm uses its running
    statistics, dropout is off) (Jiang et al. 2020, C.5, "gradient noise")."""
    x, y = ctx.require_data()
    opts = ctx.options
    size = min(opts.grad_batch, len(y) // 2)  # small training sets: smaller minibatches
    if size < 1:
        raise GengapError("grad_noise needs at least two training examples")
    count = min(opts.grad_batches, len(y) // size)
    order = torch.randperm(len(y), generator=measure_generator(opts.seed, "grad-noise"))
    params = [p for p in ctx.model.parameters() if p.requires_grad]
    grads = []
    for k in range(count):
        idx = order[k * size : (k + 1) * size]
        xb, yb = x[idx.to(x.device)].to(ctx.device), y[idx.to(y.device)].to(ctx.device)
        loss = F.cross_entropy(ctx.model(xb), yb)
        grads.append(torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)]))
    stacked = torch.stack(grads).double()
    return float(((stacked - stacked.mean(dim=0)) ** 2).sum(dim=1).sum() / (count - 1))
