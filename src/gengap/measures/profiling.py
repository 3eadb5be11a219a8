"""Where the time of a suite goes: shared passes (cached context properties) timed apart from
the measures that use them."""

from __future__ import annotations

import time
from functools import cached_property
from typing import Any


class shared_pass(cached_property):  # noqa: N801  (used like cached_property)
    """A cached property of :class:`MeasureContext` whose first computation is timed into
    ``ctx.pass_seconds[name]``. Time is exclusive: a shared pass that another one triggers is
    counted once, under its own name."""

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None or self.attrname in instance.__dict__:
            return super().__get__(instance, owner)
        stack: list[float] = instance.__dict__.setdefault("_pass_stack", [])
        started = time.perf_counter()
        stack.append(0.0)
        try:
            value = super().__get__(instance, owner)
        finally:
            nested = stack.pop()
            spent = time.perf_counter() - started
            instance.pass_seconds[self.attrname] = spent - nested
            if stack:
                stack[-1] += spent
        return value


def charge(instance: Any, name: str, seconds: float) -> None:
    """Count ``seconds`` of the shared pass now running under ``name`` instead: the time of a
    computation that rode along that pass (``MeasureContext.pass_extras``)."""
    instance.pass_seconds[name] = instance.pass_seconds.get(name, 0.0) + seconds
    stack = instance.__dict__.get("_pass_stack")
    if stack:
        stack[-1] += seconds
