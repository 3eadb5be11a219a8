"""Choosing the torch device: ``auto`` means CUDA when present, else the CPU."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from gengap.errors import GengapError


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """Turn ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` into a :class:`torch.device`; a
    :class:`torch.device` is returned as it is."""
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = named_device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise GengapError(f"device {name!r} asked for, but CUDA is not available here")
    if device.type == "cuda" and device.index is not None \
            and device.index >= torch.cuda.device_count():
        raise GengapError(f"device {name!r}: this machine has {torch.cuda.device_count()} "
                          "CUDA device(s)")
    return device


def named_device(name: str) -> torch.device:
    """``cpu``, ``cuda`` or ``cuda:N`` (any name torch reads) as a :class:`torch.device`,
    whether or not this machine has it (a Ray cluster's nodes may); a one-line error for a
    name torch does not read."""
    try:
        return torch.device(name)
    except RuntimeError:
        raise GengapError(f"unknown device {name!r} (use auto, cpu, cuda or cuda:N)") from None


@contextmanager
def ieee_float32() -> Iterator[None]:
    """Float32 convolutions and matrix products in full float32 inside, not TF32: cuDNN takes
    TF32 for float32 convolutions by default on recent NVIDIA GPUs, whose 10-bit mantissa
    (relative errors near 1e-3) would fail a comparison of two float32 computations held to
    1e-4. The settings are restored after; on the CPU they change nothing."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
