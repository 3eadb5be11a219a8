"""The optimizers of :mod:`gengap.train.optimizers` applied to P stacked networks at once.

Each parameter is one tensor of shape (P, ...); learning rate, weight decay and momentum are
tensors of shape (P,) so every network keeps its own. The update rules are torch's (SGD with
momentum and L2 weight decay, Adam, AdamW's decoupled decay, RMSprop with alpha 0.99), written
with the same operations in the same order, so a network trained in a population follows the
same trajectory as alone, up to float rounding.
"""

from __future__ import annotations

import math

import torch

# torch's defaults, which gengap's optimizers keep.
ADAM_BETAS, ADAM_EPS = (0.9, 0.999), 1e-8
RMSPROP_ALPHA, RMSPROP_EPS = 0.99, 1e-8


class BatchedOptimizer:
    """One optimizer kind over stacked parameters with per-network hyperparameters."""

    def __init__(
        self, kind: str, params: list[torch.Tensor], momentum: torch.Tensor,
        weight_decay: torch.Tensor,
    ) -> None:
        if kind not in ("sgd", "adam", "adamw", "rmsprop"):
            raise ValueError(f"no batched form of optimizer {kind!r}")
        self.kind, self.params = kind, params
        self.momentum, self.weight_decay = momentum, weight_decay
        self.state: list[list[torch.Tensor]] = [
            [torch.zeros_like(p) for _ in range(2 if kind.startswith("adam") else 1)]
            for p in params
        ]
        self.steps = 0

    def keep(self, index: torch.Tensor) -> None:
        """Drop every network not in ``index`` (state and hyperparameters)."""
        self.state = [[s.index_select(0, index) for s in group] for group in self.state]
        self.momentum = self.momentum.index_select(0, index)
        self.weight_decay = self.weight_decay.index_select(0, index)

    @torch.no_grad()
    def step(self, params: list[torch.Tensor], grads: list[torch.Tensor], lr: torch.Tensor) -> None:
        """Update ``params`` in place with ``grads``; ``lr`` holds each network's rate."""
        self.steps += 1
        for p, g, state in zip(params, grads, self.state, strict=True):
            shape = (-1,) + (1,) * (p.dim() - 1)
            lr_p, wd = lr.view(shape), self.weight_decay.view(shape)
            if self.kind == "sgd":
                d = g + wd * p
                (buf,) = state
                buf.mul_(self.momentum.view(shape)).add_(d)
                p.sub_(lr_p * buf)
            elif self.kind in ("adam", "adamw"):
                if self.kind == "adamw":
                    p.mul_(1 - lr_p * wd)
                else:
                    g = g + wd * p
                m, v = state
                b1, b2 = ADAM_BETAS
                m.lerp_(g, 1 - b1)
                v.mul_(b2).addcmul_(g, g, value=1 - b2)
                bias1, bias2 = 1 - b1**self.steps, 1 - b2**self.steps
                denom = (v.sqrt() / math.sqrt(bias2)).add_(ADAM_EPS)
                p.sub_((lr_p / bias1) * m / denom)
            else:  # rmsprop
                g = g + wd * p
                (v,) = state
                v.mul_(RMSPROP_ALPHA).addcmul_(g, g, value=1 - RMSPROP_ALPHA)
                p.sub_(lr_p * g / v.sqrt().add_(RMSPROP_EPS))
