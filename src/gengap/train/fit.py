"""Training one network until its training cross-entropy reaches the target (the Fantastic
study's stopping rule), or the epoch or step bound runs out."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch import nn

from gengap.data import Splits
from gengap.device import resolve_device
from gengap.models import build_for
from gengap.specs import RunSpec
from gengap.train.batches import EpochBatches, fails_on_one_example
from gengap.train.evaluation import evaluate_model
from gengap.train.optimizers import make_optimizer
from gengap.train.schedules import lr_factor
from gengap.train.tracking import CE_MILESTONES, RunTracker, TrainResult, cpu_state, epoch_row


def fit(
    run: RunSpec,
    splits: Splits,
    device: str | torch.device = "auto",
    on_epoch: Callable[[dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train the network that ``run`` describes on ``splits``.

    Deterministic on the CPU: ``run.seed`` seeds the initialization, the data order and the
    augmentation. The metrics hold final train/test loss and accuracy, epochs, steps, seconds,
    whether the cross-entropy target was reached (``converged``), what stopped training
    (``stopped_by``: target_ce, max_epochs, max_steps or diverged), and the step at which
    training cross-entropy first fell to each of :data:`CE_MILESTONES`. Both splits are
    evaluated (one history row, one ``on_epoch`` call) after the epochs that
    ``run.train.eval_every`` or ``run.train.eval_per_decade`` name and after the last one; the
    target and the milestones are checked at those evaluations only.
    A run whose loss becomes NaN or infinite ends as ``failed`` with its reason.
    """
    device = resolve_device(device)
    spec = run.train
    torch.manual_seed(run.seed)
    model = build_for(run.arch, splits).to(device)
    init_state = cpu_state(model)
    optimizer = make_optimizer(model.parameters(), spec)
    batches = EpochBatches(splits.x_train, splits.y_train, spec, run.seed, device,
                           merge_single=fails_on_one_example(
                               model, splits.x_train[:1].to(device)))
    per_epoch = batches.steps_per_epoch
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(spec, step, per_epoch)
    )
    tracker = RunTracker(spec, len(splits.x_train), per_epoch, len(splits.x_test))
    loss_fn = nn.CrossEntropyLoss()
    started = time.perf_counter()
    for epoch in range(1, spec.max_epochs + 1):
        model.train()
        for xb, yb in batches.epoch():
            loss = loss_fn(model(xb), yb)
            if not tracker.check_loss(loss.item()):
                break
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            tracker.steps += 1
            if tracker.out_of_steps():
                break
        if tracker.reason:
            break
        if not tracker.evaluates(epoch):
            tracker.skip_epoch(epoch, lambda: cpu_state(model))
            continue
        row = epoch_row(
            epoch, tracker.steps,
            evaluate_model(model, splits.x_train, splits.y_train),
            evaluate_model(model, splits.x_test, splits.y_test),
        )
        if on_epoch:
            on_epoch(row)
        if tracker.end_epoch(row, lambda: cpu_state(model)):
            break
    return tracker.result(init_state, cpu_state(model), time.perf_counter() - started, model)


__all__ = ["CE_MILESTONES", "TrainResult", "fit"]
