"""Optimizers by name, configured from a :class:`TrainSpec`."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

from gengap.registry import Registry
from gengap.specs import TrainSpec

OptimizerMaker = Callable[[Iterable[torch.nn.Parameter], TrainSpec], torch.optim.Optimizer]

optimizers: Registry[OptimizerMaker] = Registry("optimizer")


@optimizers.register("sgd")
def _sgd(params: Iterable[torch.nn.Parameter], spec: TrainSpec) -> torch.optim.Optimizer:
    return torch.optim.SGD(
        params, lr=spec.lr, momentum=spec.momentum, weight_decay=spec.weight_decay
    )


@optimizers.register("adam")
def _adam(params: Iterable[torch.nn.Parameter], spec: TrainSpec) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=spec.lr, weight_decay=spec.weight_decay)


@optimizers.register("adamw")
def _adamw(params: Iterable[torch.nn.Parameter], spec: TrainSpec) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=spec.lr, weight_decay=spec.weight_decay)


@optimizers.register("rmsprop")
def _rmsprop(params: Iterable[torch.nn.Parameter], spec: TrainSpec) -> torch.optim.Optimizer:
    return torch.optim.RMSprop(params, lr=spec.lr, weight_decay=spec.weight_decay)


def make_optimizer(params: Iterable[torch.nn.Parameter], spec: TrainSpec) -> torch.optim.Optimizer:
    return optimizers.get(spec.optimizer)(params, spec)
