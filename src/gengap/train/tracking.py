"""What a run records as it trains, shared by :func:`fit` and population training: the history
of evaluations, the steps at which training cross-entropy first reached each milestone, the kept
checkpoints, and the reasons to stop (target reached, a bound, divergence).

Both splits are evaluated after the epochs that ``TrainSpec.eval_every`` or
``TrainSpec.eval_per_decade`` name and after the last epoch (the epoch bound, the step bound).
The stopping target and the milestones are read from those evaluations of the whole training
split, never from running minibatch losses (which are measured on moving weights in train mode):
with sparse evaluation a run stops at the first evaluation at or below its target, and a
milestone's step is that of the first evaluation at or below it."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from gengap.specs import TrainSpec

# Training cross-entropy levels whose first crossing is recorded (optimization measures).
CE_MILESTONES = (0.1, 0.01)
# The final metrics every trained run records (a zoo with none trained yet has their columns)
FINAL_METRICS = ("train_loss", "train_acc", "test_loss", "test_acc", "epochs", "steps",
                 "seconds", "converged", "stopped_by", "train_size")

State = dict[str, torch.Tensor]


@dataclass
class TrainResult:
    """What one run produced. ``status`` is ``done`` or ``failed`` (with ``reason``);
    ``checkpoints`` maps an epoch of ``TrainSpec.checkpoints`` to the weights after it."""

    status: str
    metrics: dict[str, Any]
    history: list[dict[str, float]]
    init_state: State
    final_state: State
    reason: str | None = None
    checkpoints: dict[int, State] = field(default_factory=dict)
    model: nn.Module | None = field(default=None, repr=False)


class RunTracker:
    """Bookkeeping of one run: feed it each step's loss and each epoch's end (its evaluation,
    or :meth:`skip_epoch` when :meth:`evaluates` says the epoch is not evaluated)."""

    def __init__(self, spec: TrainSpec, train_size: int, steps_per_epoch: int,
                 test_size: int | None = None) -> None:
        self.spec, self.train_size, self.test_size = spec, train_size, test_size
        self.steps_per_epoch = steps_per_epoch
        self.history: list[dict[str, float]] = []
        self.milestones: dict[str, int] = {}
        self.checkpoints: dict[int, State] = {}
        self.steps = 0
        self.epochs = 0
        self.reason: str | None = None
        self.stopped_by = ""

    def check_loss(self, loss: float) -> bool:
        """False (and the run failed) when a minibatch loss is NaN or infinite."""
        if math.isfinite(loss):
            return True
        self.reason = f"diverged: training loss is {loss} at step {self.steps + 1}"
        return False

    def out_of_steps(self) -> bool:
        return self.spec.max_steps is not None and self.steps >= self.spec.max_steps

    def evaluates(self, epoch: int) -> bool:
        """Whether the end of ``epoch`` (``steps`` already counted) is evaluated: on the spec's
        schedule, or because no further epoch will run (a bound is reached)."""
        return self.spec.evaluates(epoch) or epoch >= self.spec.max_epochs or self.out_of_steps()

    def skip_epoch(self, epoch: int, state: Callable[[], State]) -> None:
        """Record the end of an epoch that is not evaluated: only its checkpoint is kept."""
        self.epochs = epoch
        self._checkpoint(epoch, state)

    def _checkpoint(self, epoch: int, state: Callable[[], State]) -> None:
        """Keep the weights after ``epoch`` if asked for, and only if the epoch ran whole
        (``max_steps`` can end one midway)."""
        if epoch in self.spec.checkpoints and self.steps >= epoch * self.steps_per_epoch:
            self.checkpoints[epoch] = state()

    def end_epoch(self, row: dict[str, float], state: Callable[[], State]) -> bool:
        """Record an epoch's evaluation; True when training should stop."""
        self.history.append(row)
        epoch = int(row["epoch"])
        self.epochs = epoch
        if not math.isfinite(row["train_loss"]):
            self.reason = f"diverged: training loss is {row['train_loss']} after epoch {epoch}"
            return True
        for level in CE_MILESTONES:
            if row["train_loss"] <= level:
                self.milestones.setdefault(f"steps_to_ce_{level}", self.steps)
        self._checkpoint(epoch, state)
        if row["train_loss"] <= self.spec.target_ce:
            self.stopped_by = "target_ce"
        elif self.out_of_steps():
            self.stopped_by = "max_steps"
        elif epoch >= self.spec.max_epochs:
            self.stopped_by = "max_epochs"
        return bool(self.stopped_by)

    def result(
        self, init: State, final: State, seconds: float, model: nn.Module | None = None
    ) -> TrainResult:
        # a diverged network's final accuracies and losses describe no network worth ranking
        # (NaN logits count as class 0): NaN; its history keeps every evaluated epoch
        last = self.history[-1] if self.history and not self.reason else {}
        metrics = {  # FINAL_METRICS, and the test size and milestones
            "train_loss": last.get("train_loss", math.nan),
            "train_acc": last.get("train_acc", math.nan),
            "test_loss": last.get("test_loss", math.nan),
            "test_acc": last.get("test_acc", math.nan),
            "epochs": self.epochs,
            "steps": self.steps,
            "seconds": seconds,
            "converged": self.stopped_by == "target_ce",
            "stopped_by": "diverged" if self.reason else self.stopped_by,
            "train_size": self.train_size,
            # the robust sign-error weighs each gap by the test examples behind it
            **({} if self.test_size is None else {"test_size": self.test_size}),
            **self.milestones,
        }
        return TrainResult(
            status="failed" if self.reason else "done",
            reason=self.reason,
            metrics=metrics,
            history=self.history,
            init_state=init,
            final_state=final,
            checkpoints=self.checkpoints,
            model=model,
        )


def epoch_row(
    epoch: int, steps: int, train: tuple[float, float], test: tuple[float, float]
) -> dict[str, float]:
    return {
        "epoch": epoch,
        "steps": steps,
        "train_loss": train[0],
        "train_acc": train[1],
        "test_loss": test[0],
        "test_acc": test[1],
    }


def cpu_state(model: nn.Module) -> State:
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}
