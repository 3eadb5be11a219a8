"""Computing a set of measures on one model."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from gengap.measures.context import MeasureContext
from gengap.measures.registry import Measure, select
from gengap.train.batches import has_batch_norm


def compute(
    ctx: MeasureContext, names: str | list[str] | None = None
) -> dict[str, float]:
    """Values of the chosen measures on the context's model: names or groups (each must be
    computable here, else an error names what it lacks), or by default every measure whose
    needs the context meets (:func:`available`)."""
    return {name: value for name, (value, _) in compute_timed(ctx, names).items()}


def compute_timed(
    ctx: MeasureContext, names: str | list[str] | None = None
) -> dict[str, tuple[float, float]]:
    """``name -> (value, seconds)``; a measure's seconds include shared work it triggered
    first (the forward pass goes to whichever data measure runs first), except a planned
    measure that rode along that work (``ctx.pass_extras``): its time is its own."""
    out: dict[str, tuple[float, float]] = {}
    chosen = _chosen(ctx, names)
    rode: dict[str, float] = {}  # seconds of measures computed inside another one's pass
    for m in chosen:
        charged = dict(ctx.pass_seconds)
        started = time.perf_counter()
        value = ctx.value(m.name)
        seconds = time.perf_counter() - started + rode.pop(m.name, 0.0)
        for name in ctx.pass_extras:
            extra = ctx.pass_seconds.get(name, 0.0) - charged.get(name, 0.0)
            if extra and name != m.name:
                seconds -= extra
                rode[name] = rode.get(name, 0.0) + extra
        out.update(_flatten(m.name, value, seconds))
    return out


def _flatten(name: str, value: Any, seconds: float) -> dict[str, tuple[float, float]]:
    """A vector measure's features become ``name.<key>`` (its seconds shared evenly)."""
    if not isinstance(value, dict):
        return {name: (value, seconds)}
    return {f"{name}.{key}": (v, seconds / max(len(value), 1)) for key, v in value.items()}


def _chosen(ctx: MeasureContext, names: str | list[str] | None) -> list[Measure]:
    """The measures ``names`` picks, by default those the context can feed; planned on the
    context (:meth:`MeasureContext.plan`), so that its passes can serve several."""
    chosen = select(available(ctx) if names is None else names)
    ctx.plan(m.name for m in chosen)
    return chosen


def available(ctx: MeasureContext, names: str | list[str] | None = None) -> list[str]:
    """The chosen measures whose needs this context can meet (init weights, training data,
    trajectory, one input's shape present). Without an input's shape a model with BatchNorm
    gives only the measures of its architecture: folding BatchNorm reads its dataflow on an
    example input."""
    have = {"weights", "gradients", "init_weights", "train_data", "trajectory", "input_shape"}
    if ctx.input_shape is None:
        have.discard("input_shape")
        if has_batch_norm(ctx.model):
            have -= {"weights", "init_weights"}
    if ctx.init_model is None:
        have.discard("init_weights")
    if ctx.x_train is None or ctx.y_train is None:
        have.discard("train_data")
    if ctx.trajectory is None:
        have.discard("trajectory")
    # the agreement measures compare the two models on held-out inputs
    if getattr(ctx, "second_model", None) is not None and ctx.x_heldout is not None:
        have.add("second_model")
    return split_by_needs(names, have)[0]


def split_by_needs(
    names: str | list[str] | None, have: set[str]
) -> tuple[list[str], dict[str, frozenset[str]]]:
    """The chosen measures whose needs ``have`` meets, and each other chosen one with the
    needs it lacks."""
    met: list[str] = []
    unmet: dict[str, frozenset[str]] = {}
    for m in select(names):
        if m.needs <= have:
            met.append(m.name)
        else:
            unmet[m.name] = m.needs - have
    return met, unmet


@dataclass
class Profile:
    """Where a suite's time went: each measure's own seconds (without the shared passes it
    triggered) and each shared pass's seconds."""

    values: dict[str, tuple[float, float]]  # as compute_timed: name -> (value, seconds)
    measure_seconds: dict[str, float]
    pass_seconds: dict[str, float]
    total_seconds: float
    no_value: dict[str, str] = field(default_factory=dict)  # NaN measures: why (no_value)
    # the arithmetic of the Monte Carlo passes, where one ran ("" otherwise; precision.py)
    monte_carlo_precision: str = ""
    # the arithmetic the chosen Monte Carlo measures' values are of, ran or would have run
    # (MeasureContext.monte_carlo_arithmetic); "" where none was chosen
    monte_carlo_arithmetic: str = ""


def profile(ctx: MeasureContext, names: str | list[str] | None = None) -> Profile:
    """Compute the chosen measures (as :func:`compute` chooses them) and split the time
    between measures and shared passes."""
    values: dict[str, tuple[float, float]] = {}
    own: dict[str, float] = {}
    begun = time.perf_counter()
    chosen = _chosen(ctx, names)
    for m in chosen:
        passes_before = sum(ctx.pass_seconds.values())
        started = time.perf_counter()
        value = ctx.value(m.name)
        spent = time.perf_counter() - started
        own[m.name] = spent - (sum(ctx.pass_seconds.values()) - passes_before)
        values.update(_flatten(m.name, value, spent))
    passes = dict(ctx.pass_seconds)
    for name in ctx.pass_extras:  # computed within a pass, but a measure's own time
        if name in own:
            own[name] += passes.pop(name, 0.0)
    arithmetic = ctx.monte_carlo_arithmetic if any(m.monte_carlo for m in chosen) else ""
    return Profile(values, own, passes, time.perf_counter() - begun,
                   ctx.reasons(values), ctx.details.get("monte_carlo_precision", ""), arithmetic)
