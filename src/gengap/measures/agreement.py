"""Agreement between two runs that differ only in seed (Jiang, Nagarajan, Baek & Kolter 2022):
their disagreement rate on unlabeled held-out inputs estimates the test error."""

from __future__ import annotations

import torch

from gengap.errors import GengapError
from gengap.measures.context import MeasureContext
from gengap.measures.registry import measure


def disagreement_rate(pred_a: torch.Tensor, pred_b: torch.Tensor) -> float:
    """The share of positions where two label vectors differ."""
    if pred_a.shape != pred_b.shape or pred_a.numel() == 0:
        raise GengapError(
            f"disagreement needs two non-empty predictions of one shape, got "
            f"{tuple(pred_a.shape)} and {tuple(pred_b.shape)}"
        )
    return float((pred_a != pred_b).double().mean())


@torch.no_grad()
def predictions(model: torch.nn.Module, x: torch.Tensor, device: torch.device,
                batch_size: int = 1024) -> torch.Tensor:
    """argmax of the model's outputs on ``x``, batched, on the CPU."""
    return torch.cat([
        model(x[i : i + batch_size].to(device)).argmax(dim=1).cpu()
        for i in range(0, len(x), batch_size)
    ])


@measure("disagreement", group="agreement", needs=("weights", "second_model"), cost="G")
def disagreement(ctx: MeasureContext) -> float:
    """Dis(h, h′) = P_x[h(x) ≠ h′(x)] on the held-out inputs, h′ a run of the same spec with
    another seed (Jiang et al. 2022: ≈ the test error when the ensemble is class-calibrated)."""
    second = ctx.require_second()
    if ctx.x_heldout is None:
        raise GengapError("disagreement needs held-out inputs (x_heldout)")
    return disagreement_rate(
        predictions(ctx.model, ctx.x_heldout, ctx.device, ctx.batch_size),
        predictions(second, ctx.x_heldout, ctx.device, ctx.batch_size),
    )
