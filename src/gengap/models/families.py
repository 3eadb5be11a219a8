"""The registry of architecture families and the one entry point that builds them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from gengap.errors import GengapError
from gengap.registry import Registry
from gengap.specs import ArchSpec

Builder = Callable[..., nn.Module]

families: Registry[Builder] = Registry("architecture family")
# the ArchSpec fields most families read; ``options`` is every family's, never listed
COMMON_KNOBS = ("width", "depth", "activation", "dropout", "batch_norm")
# family -> the ArchSpec fields its builder reads (a zoo axis over another one would train
# identical networks under different names)
family_knobs: dict[str, tuple[str, ...]] = {}


def register_family(name: str, knobs: tuple[str, ...] = COMMON_KNOBS
                    ) -> Callable[[Builder], Builder]:
    """Register ``builder(spec, input_shape, num_classes, vocab_size) -> nn.Module`` under
    ``name``; ``vocab_size`` is None for real-valued inputs. ``knobs``: the
    :class:`ArchSpec` fields the builder reads besides ``family`` and ``options``."""
    family_knobs[name] = tuple(knobs)
    return families.register(name)


def build(
    spec: ArchSpec, input_shape: tuple[int, ...], num_classes: int, vocab_size: int | None = None
) -> nn.Module:
    """A freshly initialized network of ``spec.family`` for inputs of ``input_shape`` (token
    sequences: ``(seq_len,)`` with ``vocab_size`` tokens)."""
    return families.get(spec.family)(spec, tuple(input_shape), num_classes, vocab_size)


def build_for(spec: ArchSpec, splits: Any) -> nn.Module:
    """:func:`build` for the shapes of a :class:`gengap.data.Splits` (its ``vocab_size`` when
    the source is a token task)."""
    return build(spec, splits.input_shape, splits.num_classes, getattr(splits, "vocab_size", None))


def uses_norm(spec: ArchSpec, default: bool) -> bool:
    """``spec.batch_norm``, or the family's ``default`` when the spec leaves it unset."""
    return default if spec.batch_norm is None else spec.batch_norm


def image_shape(family: str, input_shape: tuple[int, ...]) -> tuple[int, int, int]:
    """Check that inputs are images, (channels, height, width)."""
    if len(input_shape) != 3:
        raise GengapError(
            f"architecture {family!r} needs image inputs (channels, height, width), "
            f"got inputs of shape {input_shape}"
        )
    return input_shape  # type: ignore[return-value]


def real_inputs(family: str, vocab_size: int | None) -> None:
    """Refuse token inputs for families that take real-valued ones."""
    if vocab_size is not None:
        raise GengapError(
            f"architecture {family!r} takes real-valued inputs; token data needs 'transformer'"
        )


ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
}
