"""Learning-rate schedules as a factor of the peak rate, per optimizer step.

One pure function serves both :func:`gengap.train.fit` (through ``LambdaLR``) and population
training, so a network gets the same rates either way.
"""

from __future__ import annotations

import math

from gengap.specs import TrainSpec


def total_steps(spec: TrainSpec, steps_per_epoch: int) -> int:
    """The step bound: ``max_epochs`` epochs, or ``max_steps`` when that comes first."""
    bound = spec.max_epochs * steps_per_epoch
    return min(bound, spec.max_steps) if spec.max_steps else bound


def lr_factor(spec: TrainSpec, step: int, steps_per_epoch: int) -> float:
    """Factor of ``spec.lr`` for optimizer step ``step`` (0 for the first step).

    Linear warm-up over ``warmup_epochs`` (from lr/warm-up-steps up to lr), then ``constant``,
    ``step`` (times ``lr_gamma`` after each epoch in ``lr_steps``) or ``cosine`` (half a cosine
    from lr to 0 over the remaining steps of the step bound).
    """
    # rounded half to even (Python's round: 2.5 steps are 2), as run ids trained so far were;
    # changing it would change what a stored run id trains
    warm = round(spec.warmup_epochs * steps_per_epoch)
    if step < warm:
        return (step + 1) / warm
    if spec.schedule == "step":
        epochs_done = step // steps_per_epoch
        return spec.lr_gamma ** sum(1 for e in spec.lr_steps if e <= epochs_done)
    if spec.schedule == "cosine":
        span = max(1, total_steps(spec, steps_per_epoch) - warm)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warm) / span)))
    return 1.0
