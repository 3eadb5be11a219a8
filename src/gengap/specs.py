"""Validated, frozen descriptions of work. Defaults live here and nowhere else.

A :class:`RunSpec` says everything that determines one training run; its canonical JSON hashes
to the run id. A :class:`ZooSpec` is a base run plus axes (lists of values) and seeds; it expands
into the product of its axes (the ``grid`` design).
"""

from __future__ import annotations

import hashlib
import itertools
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

Scalar = bool | int | float | str


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def canonical_json(self) -> str:
        """JSON with sorted keys and no whitespace: equal specs give equal strings."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))


class DataSpec(_Spec):
    """Which data set, how it is split, and how much of the training split is used."""

    name: str = Field("digits", description="a registered data source, see `gengap data list`")
    seed: int = Field(0, description="seed of the train/test split and of subsampling")
    test_fraction: float = Field(
        0.25, gt=0, lt=1, description="held-out share, for sources without a fixed test split"
    )
    train_fraction: float = Field(
        1.0, gt=0, le=1, description="stratified share of the training split that is kept"
    )
    normalize: bool = Field(True, description="standardize inputs with training-split statistics")
    options: dict[str, Scalar] = Field(
        default_factory=dict, description="source-specific knobs, checked by the source"
    )


class ArchSpec(_Spec):
    """Which architecture family, and its size knobs."""

    family: str = Field("cnn", description="a registered architecture family")
    width: int = Field(16, ge=1, description="channels (cnn) or hidden units (mlp)")
    depth: int = Field(3, ge=1, description="number of conv (cnn) or hidden (mlp) layers")
    activation: Literal["relu", "tanh", "gelu"] = "relu"
    batch_norm: bool = False
    dropout: float = Field(0.0, ge=0, lt=1)


class TrainSpec(_Spec):
    """How one network is fitted."""

    optimizer: Literal["sgd", "adam"] = "sgd"
    lr: float = Field(0.05, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum")
    weight_decay: float = Field(0.0, ge=0)
    batch_size: int = Field(64, ge=1)
    max_epochs: int = Field(100, ge=1)
    target_ce: float = Field(
        0.01, ge=0, description="stop once training cross-entropy is at or below this"
    )


class RunSpec(_Spec):
    """Everything that determines one run: same spec and seed, same result on the CPU."""

    data: DataSpec = DataSpec()
    arch: ArchSpec = ArchSpec()
    train: TrainSpec = TrainSpec()
    seed: int = Field(0, description="seed of initialization and data order")

    @property
    def run_id(self) -> str:
        """First 16 hex digits of the SHA-256 of the canonical JSON."""
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()[:16]


class ZooSpec(_Spec):
    """A population of runs: a base :class:`RunSpec` plus axes, crossed with seeds.

    ``axes`` maps a dotted field path (``"arch.width"``, ``"data.options.noise"``) to the values
    it takes; the ``grid`` design trains the full product of all axes and seeds.
    """

    name: str = "zoo"
    design: Literal["grid"] = "grid"
    seeds: tuple[int, ...] = Field((0,), min_length=1)
    data: DataSpec = DataSpec()
    arch: ArchSpec = ArchSpec()
    train: TrainSpec = TrainSpec()
    axes: dict[str, tuple[Any, ...]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check_axes(self) -> ZooSpec:
        base = self.base().model_dump()
        for path, values in self.axes.items():
            if not values:
                raise ValueError(f"{path}: empty list of values")
            if len({json.dumps(v, sort_keys=True) for v in values}) != len(values):
                raise ValueError(f"{path}: a value is listed twice")
            for value in values:
                try:
                    RunSpec.model_validate(override(base, {path: value}))
                except ValidationError as err:
                    raise ValueError(f"{path} = {value!r}: {err.errors()[0]['msg']}") from None
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError("seeds: a seed is listed twice")
        return self

    @property
    def hyperparameters(self) -> list[str]:
        """The axis names, in the order they were given."""
        return list(self.axes)

    def base(self) -> RunSpec:
        return RunSpec(data=self.data, arch=self.arch, train=self.train)

    def runs(self) -> list[RunSpec]:
        """Every run of the zoo, in a fixed order (axes as given, seeds innermost)."""
        base = self.base().model_dump()
        runs = []
        for combo in itertools.product(*self.axes.values(), self.seeds):
            values = dict(zip(self.hyperparameters, combo[:-1], strict=True))
            runs.append(RunSpec.model_validate(override(base, {**values, "seed": combo[-1]})))
        return runs


def override(tree: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """A copy of nested ``tree`` with each dotted path in ``values`` set."""
    out = json.loads(json.dumps(tree))
    for path, value in values.items():
        node = out
        *parents, leaf = path.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return out


def hyperparameter_values(run: RunSpec, names: list[str]) -> dict[str, Any]:
    """The values of dotted ``names`` in ``run`` (the zoo's axes, for one run)."""
    tree = run.model_dump(mode="json")
    out = {}
    for name in names:
        node: Any = tree
        for key in name.split("."):
            node = node[key]
        out[name] = node
    return out


def first_problem(err: ValidationError) -> str:
    """One line for a pydantic error: where (dotted) and what."""
    problem = err.errors()[0]
    where = ".".join(str(part) for part in problem["loc"])
    message = problem["msg"].removeprefix("Value error, ")
    if problem["type"] == "extra_forbidden":
        message = "unknown key"
    return f"{where}: {message}" if where else message
