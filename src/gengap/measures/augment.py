"""The augmentations of Aithal et al.'s consistency penalty (PGDL 2nd place), on image batches
(N, C, H, W) as the model sees them (already standardized, so photometric changes act on
standardized values), each with its penalty weight λ."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F  # noqa: N812

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def _uniform(
    n: int, lo: float, hi: float, gen: torch.Generator, like: torch.Tensor
) -> torch.Tensor:
    return (torch.rand(n, generator=gen) * (hi - lo) + lo).to(like).reshape(-1, 1, 1, 1)


def flip(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Left-right mirror."""
    return x.flip(-1)


def saturation(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Scale the distance to the per-pixel channel mean by a factor in [0.6, 1.6] (a no-op on
    one-channel images)."""
    gray = x.mean(dim=1, keepdim=True)
    return gray + (x - gray) * _uniform(len(x), 0.6, 1.6, gen, x)


def crop_resize(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Central crop of 90% of each side, resized back (bilinear)."""
    h, w = x.shape[-2:]
    ch, cw = max(1, round(0.9 * h)), max(1, round(0.9 * w))
    top, left = (h - ch) // 2, (w - cw) // 2
    crop = x[..., top : top + ch, left : left + cw]
    return F.interpolate(crop, size=(h, w), mode="bilinear", align_corners=False)


def sobel(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Per-channel Sobel gradient magnitude."""
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]).to(x)
    kernels = torch.stack([kx, kx.T])[:, None].repeat(x.shape[1], 1, 1, 1)
    g = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernels, groups=x.shape[1])
    gx, gy = g[:, 0::2], g[:, 1::2]
    return (gx.pow(2) + gy.pow(2)).sqrt()


def brightness(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Add one offset in [−0.5, 0.5] per image."""
    return x + _uniform(len(x), -0.5, 0.5, gen, x)


def flip_saturation(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    return saturation(flip(x, gen), gen)


def cutout(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Erase (set to 0, the standardized mean) one random square of side ⌈H/4⌉ per image."""
    n, _, h, w = x.shape
    side = max(1, -(-h // 4))
    top = torch.randint(0, h - side + 1, (n,), generator=gen)
    left = torch.randint(0, w - side + 1, (n,), generator=gen)
    rows = torch.arange(h)[None, :, None]
    cols = torch.arange(w)[None, None, :]
    box = ((rows >= top[:, None, None]) & (rows < (top + side)[:, None, None])
           & (cols >= left[:, None, None]) & (cols < (left + side)[:, None, None]))
    return x.masked_fill(box[:, None].to(x.device), 0.0)


AUGMENTATIONS: list[tuple[Augment, float]] = [
    (flip, 6.0),
    (saturation, 1.0),
    (crop_resize, 2.0),
    (sobel, 3.0),
    (brightness, 1.0),
    (flip_saturation, 12.0),
    (cutout, 2.0),
]
