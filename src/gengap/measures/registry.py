"""The catalogue's registry. A measure is a pure function of a :class:`MeasureContext` that
declares what it needs and how costly it is; adding one is one decorated function."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gengap.errors import GengapError
from gengap.registry import Registry

if TYPE_CHECKING:
    from gengap.measures.context import MeasureContext

NEEDS = {
    "weights": "the trained weights",
    "init_weights": "the weights at initialization",
    "train_data": "the training set",
    "gradients": "gradients of the loss",
    "second_model": "a second run that differs only in seed",
    "trajectory": "records of the training run",
    "input_shape": "one input's shape (input_shape or x_train)",
}

# Cost classes of the measures reference (shared/reference/measures.md, section 4).
COSTS = {
    "A": "arithmetic on weights",
    "B": "an SVD or FFT per layer",
    "C": "one forward pass over the training data",
    "D": "forward and backward passes",
    "E": "second order (Hessian-vector products)",
    "F": "Monte Carlo perturbation with a search (many passes)",
    "G": "the training trajectory or extra training runs",
}

MeasureFn = Callable[["MeasureContext"], float]


class NotApplicable(GengapError):
    """Raised by a measure whose formula does not apply to this model or data (augmentations
    of image inputs on a vector task, say); the measure's value is then NaN."""


@dataclass(frozen=True)
class Measure:
    """One entry of the catalogue; its docstring gives the formula and the source."""

    name: str
    group: str
    needs: frozenset[str]
    cost: str
    fn: MeasureFn
    vector: bool = False  # fn returns {feature: float}, stored as columns <name>.<feature>

    @property
    def doc(self) -> str:
        return inspect.getdoc(self.fn) or ""

    @property
    def monte_carlo(self) -> bool:
        """Whether the value comes from Monte Carlo perturbation passes (cost class F: the σ′
        and α′ searches, module criticality), whose arithmetic ``MeasureOptions.precision``
        chooses."""
        return self.cost == "F"

    @property
    def summary(self) -> str:
        """The docstring's first sentence (of its first paragraph)."""
        paragraph = " ".join(self.doc.split("\n\n")[0].split()) if self.doc else ""
        return re.split(r"(?<=[^l]\.)\s+(?=[A-Z])", paragraph)[0]


measures: Registry[Measure] = Registry("measure")


def measure(
    name: str, group: str, needs: tuple[str, ...] = ("weights",), cost: str = "A",
    vector: bool = False,
) -> Callable[[MeasureFn], MeasureFn]:
    """Register ``fn(ctx) -> float`` as measure ``name`` in ``group`` (``vector``: ``fn``
    returns a dict of named floats, stored as columns ``name.<key>``)."""
    unknown = set(needs) - set(NEEDS)
    if unknown or cost not in COSTS:
        raise ValueError(f"measure {name!r}: bad needs {sorted(unknown)} or cost {cost!r}")

    def decorate(fn: MeasureFn) -> MeasureFn:
        measures.add(name, Measure(name, group, frozenset(needs), cost, fn, vector))
        return fn

    return decorate


def groups() -> list[str]:
    return sorted({measures.get(name).group for name in measures})


def is_monte_carlo(name: str) -> bool:
    """Whether ``name`` is a registered measure of Monte Carlo passes (:attr:`Measure.monte_carlo`);
    False for any other stored column (a vector measure's feature, an unknown name)."""
    return name in measures and measures.get(name).monte_carlo


def select(spec: str | list[str] | None = None) -> list[Measure]:
    """Measures by name or group: ``None`` or ``"all"`` for all, else comma-separated names
    or group names, in catalogue order."""
    if spec is None or isinstance(spec, str) and spec == "all":
        return [measures.get(name) for name in measures]
    wanted = spec.split(",") if isinstance(spec, str) else _names(spec)
    chosen: dict[str, Measure] = {}
    for item in (w.strip() for w in wanted if w.strip()):
        if item in measures:
            chosen[item] = measures.get(item)
        elif item in groups():
            chosen.update({n: measures.get(n) for n in measures if measures.get(n).group == item})
        else:
            raise GengapError(
                f"unknown measure or group {item!r}: `gengap measures list` names them all"
            )
    if not chosen:  # "" or ",": a slip, not a wish to measure nothing
        raise GengapError(f"no measure named in {spec!r} (names or groups, or all)")
    return list(chosen.values())


def _names(spec: Any) -> list[str]:
    """The names of an iterable of strings (a list, tuple, set, dict's keys, generator...)."""
    try:
        wanted = list(spec)
    except TypeError:
        wanted = None
    if wanted is None or not all(isinstance(w, str) for w in wanted):
        raise GengapError(f"measures are chosen by a name or a list of names, not {spec!r}")
    return wanted


def named(spec: str | list[str] | None) -> set[str]:
    """The measures ``spec`` names one by one (not through a group or ``all``)."""
    if spec is None or spec == "all":
        return set()
    items = spec.split(",") if isinstance(spec, str) else spec
    return {item.strip() for item in items} & set(measures)
