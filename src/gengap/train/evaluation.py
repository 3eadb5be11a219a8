"""Loss and accuracy of a network on a whole split, in eval mode and without gradients."""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def evaluate_model(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 2048
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` on ``(x, y)``."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    loss_sum, correct = 0.0, 0
    for start in range(0, len(x), batch_size):
        xb = x[start : start + batch_size].to(device)
        yb = y[start : start + batch_size].to(device)
        logits = model(xb)
        # summed in float64, as a population sums it: a float32 sum of huge losses overflows
        # to inf at a chunk size the other does not reach
        loss_sum += float(nn.functional.cross_entropy(logits, yb, reduction="none").double().sum())
        correct += int((logits.argmax(1) == yb).sum())
    model.train(was_training)
    return loss_sum / len(x), correct / len(x)
