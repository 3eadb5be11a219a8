"""Choosing the torch device: ``auto`` means CUDA when present, else the CPU."""

from __future__ import annotations

import torch

from gengap.errors import GengapError


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """Turn ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` into a :class:`torch.device`; a
    :class:`torch.device` is returned as it is."""
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise GengapError(f"unknown device {name!r} (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise GengapError(f"device {name!r} asked for, but CUDA is not available here")
    if device.type == "cuda" and device.index is not None \
            and device.index >= torch.cuda.device_count():
        raise GengapError(f"device {name!r}: this machine has {torch.cuda.device_count()} "
                          "CUDA device(s)")
    return device
