"""Training one network until its training cross-entropy reaches the target (the Fantastic
study's stopping rule) or the epoch bound runs out."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from gengap.data import Splits
from gengap.device import resolve_device
from gengap.models import build
from gengap.specs import RunSpec
from gengap.train.evaluation import evaluate_model
from gengap.train.optimizers import make_optimizer

# Training cross-entropy levels whose first crossing is recorded (optimization measures).
CE_MILESTONES = (0.1, 0.01)


@dataclass
class TrainResult:
    """What one run produced. ``status`` is ``done`` or ``failed`` (with ``reason``)."""

    status: str
    metrics: dict[str, Any]
    history: list[dict[str, float]]
    init_state: dict[str, torch.Tensor]
    final_state: dict[str, torch.Tensor]
    reason: str | None = None
    model: nn.Module | None = field(default=None, repr=False)


def fit(
    run: RunSpec,
    splits: Splits,
    device: str | torch.device = "auto",
    on_epoch: Callable[[dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train the network that ``run`` describes on ``splits``.

    Deterministic on the CPU: ``run.seed`` seeds the initialization and the data order.
    The metrics hold final train/test loss and accuracy, epochs, steps, seconds, whether the
    cross-entropy target was reached (``converged``), and the step at which training
    cross-entropy first fell to each of :data:`CE_MILESTONES` (checked at epoch ends).
    A run whose loss becomes NaN or infinite ends as ``failed``.
    """
    device = resolve_device(device) if isinstance(device, str) else device
    torch.manual_seed(run.seed)
    model = build(run.arch, splits.input_shape, splits.num_classes).to(device)
    init_state = _cpu_state(model)
    optimizer = make_optimizer(model.parameters(), run.train)
    order = torch.Generator().manual_seed(run.seed)
    x_train, y_train = splits.x_train.to(device), splits.y_train.to(device)
    n, batch = len(x_train), run.train.batch_size
    history: list[dict[str, float]] = []
    milestones: dict[str, int] = {}
    steps, started, reason = 0, time.perf_counter(), None
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(1, run.train.max_epochs + 1):
        model.train()
        perm = torch.randperm(n, generator=order).to(device)
        for start in range(0, n, batch):
            idx = perm[start : start + batch]
            loss = loss_fn(model(x_train[idx]), y_train[idx])
            if not math.isfinite(loss.item()):
                reason = f"diverged: training loss is {loss.item()} at step {steps + 1}"
                break
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            steps += 1
        if reason:
            break
        row = _epoch_row(model, splits, epoch, steps)
        history.append(row)
        if on_epoch:
            on_epoch(row)
        if not math.isfinite(row["train_loss"]):
            reason = f"diverged: training loss is {row['train_loss']} after epoch {epoch}"
            break
        for level in CE_MILESTONES:
            if row["train_loss"] <= level:
                milestones.setdefault(f"steps_to_ce_{level}", steps)
        if row["train_loss"] <= run.train.target_ce:
            break
    last = history[-1] if history else {}
    metrics = {
        "train_loss": last.get("train_loss", math.nan),
        "train_acc": last.get("train_acc", math.nan),
        "test_loss": last.get("test_loss", math.nan),
        "test_acc": last.get("test_acc", math.nan),
        "epochs": len(history),
        "steps": steps,
        "seconds": time.perf_counter() - started,
        "converged": bool(history) and last["train_loss"] <= run.train.target_ce,
        "train_size": n,
        **milestones,
    }
    return TrainResult(
        status="failed" if reason else "done",
        reason=reason,
        metrics=metrics,
        history=history,
        init_state=init_state,
        final_state=_cpu_state(model),
        model=model,
    )


def _epoch_row(model: nn.Module, splits: Splits, epoch: int, steps: int) -> dict[str, float]:
    train_loss, train_acc = evaluate_model(model, splits.x_train, splits.y_train)
    test_loss, test_acc = evaluate_model(model, splits.x_test, splits.y_test)
    return {
        "epoch": epoch,
        "steps": steps,
        "train_loss": train_loss,
        "train_acc": train_acc,
        "test_loss": test_loss,
        "test_acc": test_acc,
    }


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}


__all__ = ["CE_MILESTONES", "TrainResult", "fit"]
