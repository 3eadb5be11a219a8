"""The registry of architecture families and the one entry point that builds them."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from gengap.registry import Registry
from gengap.specs import ArchSpec

Builder = Callable[[ArchSpec, tuple[int, ...], int], nn.Module]

families: Registry[Builder] = Registry("architecture family")


def register_family(name: str) -> Callable[[Builder], Builder]:
    """Register ``builder(spec, input_shape, num_classes) -> nn.Module`` under ``name``."""
    return families.register(name)


def build(spec: ArchSpec, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """A freshly initialized network of ``spec.family`` for inputs of ``input_shape``."""
    return families.get(spec.family)(spec, tuple(input_shape), num_classes)


ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
}
