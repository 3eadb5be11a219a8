"""Minibatches of one epoch: the order and the augmentation (flips, padded crops) are drawn
from one generator seeded by the run's seed, so runs with the same seed see the same batches
(the precondition of population training)."""

from __future__ import annotations

import copy
from collections.abc import Iterator

import torch

from gengap.data.splits import plain_strides
from gengap.errors import GengapError
from gengap.specs import TrainSpec


class EpochBatches:
    """Yields ``(x, y)`` minibatches of the training split, epoch after epoch. With
    ``merge_single`` (a model that cannot train on one example, :func:`fails_on_one_example`),
    a last minibatch of one example joins the one before it."""

    def __init__(
        self, x: torch.Tensor, y: torch.Tensor, spec: TrainSpec, seed: int, device: torch.device,
        merge_single: bool = False,
    ) -> None:
        check_augmentable(spec, x)
        self.x, self.y = plain_strides(x.to(device)), y.to(device)
        self.spec, self.device = spec, device
        self.generator = torch.Generator().manual_seed(seed)
        n, size = len(self.x), spec.batch_size
        self.starts = list(range(0, n, size))
        if merge_single and len(self.starts) > 1 and n - self.starts[-1] == 1:
            self.starts.pop()
        self.ends = [*self.starts[1:], n]

    @property
    def steps_per_epoch(self) -> int:
        return len(self.starts)

    def epoch(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        perm = torch.randperm(len(self.x), generator=self.generator).to(self.device)
        for start, end in zip(self.starts, self.ends, strict=True):
            idx = perm[start:end]
            yield self._augment(self.x[idx]), self.y[idx]

    def _augment(self, xb: torch.Tensor) -> torch.Tensor:
        if self.spec.flip:
            flip = (torch.rand(len(xb), generator=self.generator) < 0.5).to(self.device)
            xb = torch.where(flip[:, None, None, None], xb.flip(-1), xb)
        if self.spec.crop:
            xb = _random_crop(xb, self.spec.crop, self.generator)
        return xb


def check_augmentable(spec: TrainSpec, x: torch.Tensor) -> None:
    """Flips and crops act on images (N, C, H, W): a one-line error for other inputs (also
    raised before a new zoo's folder is made, so the message names the spec's place)."""
    used = [name for name in ("flip", "crop") if getattr(spec, name)]
    if used and x.dim() != 4:
        raise GengapError(f"[train] {' and '.join(used)}: flips and crops need image inputs "
                          f"(N, C, H, W); the data's inputs are {tuple(x.shape)}")


def has_batch_norm(model: torch.nn.Module) -> bool:
    """Whether ``model`` holds a batch norm layer (its training statistics are the batch's)."""
    return any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())


def fails_on_one_example(model: torch.nn.Module, example: torch.Tensor) -> bool:
    """Whether a training-mode forward pass of ``model`` on the single input ``example``
    (shape (1, ...)) fails: batch norm that sees one value per channel (after a dense layer,
    or on 1x1 feature maps) raises; wider feature maps train (see ``merge_single``). Tried on
    a copy, so the model's statistics are left alone."""
    if not has_batch_norm(model):
        return False
    probe = copy.deepcopy(model).train()
    try:
        with torch.no_grad():
            probe(example)
    except ValueError:
        return True
    return False


def _random_crop(xb: torch.Tensor, pad: int, generator: torch.Generator) -> torch.Tensor:
    """Zero-pad by ``pad`` pixels and cut each image back to its size at a random offset."""
    n, _, h, w = xb.shape
    padded = torch.nn.functional.pad(xb, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(xb.device)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(xb.device)
    rows = (dy[:, None] + torch.arange(h, device=xb.device))[:, :, None]  # (n, h, 1)
    cols = (dx[:, None] + torch.arange(w, device=xb.device))[:, None, :]  # (n, 1, w)
    batch = torch.arange(n, device=xb.device)[:, None, None]
    # not .contiguous(), a no-op for one channel that keeps channels-last strides
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2).clone(
        memory_format=torch.contiguous_format)
