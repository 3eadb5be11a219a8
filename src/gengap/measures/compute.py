"""Computing a set of measures on one model."""

from __future__ import annotations

import time

from gengap.measures.context import MeasureContext
from gengap.measures.registry import select


def compute(
    ctx: MeasureContext, names: str | list[str] | None = None
) -> dict[str, float]:
    """Values of the chosen measures (names, groups, or all) on the context's model."""
    return {name: value for name, (value, _) in compute_timed(ctx, names).items()}


def compute_timed(
    ctx: MeasureContext, names: str | list[str] | None = None
) -> dict[str, tuple[float, float]]:
    """``name -> (value, seconds)``; a measure's seconds include shared work it triggered
    first (the forward pass goes to whichever data measure runs first)."""
    out = {}
    for m in select(names):
        started = time.perf_counter()
        value = ctx.value(m.name)
        out[m.name] = (value, time.perf_counter() - started)
    return out
