"""Validated, frozen descriptions of work. Defaults live here and nowhere else.

A :class:`RunSpec` says everything that determines one training run; its canonical JSON hashes
to the run id. A :class:`ZooSpec` is a base run plus axes (lists of values) and seeds; it expands
into the product of its axes (the ``grid`` design).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import random
from collections import OrderedDict
from collections.abc import Collection, Mapping
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)

from gengap.errors import GengapError

Scalar = bool | int | float | str
MAX_SEED = 2**32 - 1  # numpy's and scikit-learn's seeds are 32-bit
# The runs of the last few zoo specs expanded, by canonical JSON (ZooSpec.runs), latest last
_EXPANDED: OrderedDict[str, tuple[RunSpec, ...]] = OrderedDict()
EXPANDED_KEPT = 4
# What torch.manual_seed takes; run seeds reach it as they are (numpy sees them modulo 2**32)
Seed = Annotated[int, Field(ge=-(2**63), le=2**64 - 1)]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_booleans_as_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        """TOML's true and false are not numbers (pydantic would read true as 1). A spec
        file's other values are checked for their types where it is read
        (:func:`type_problem`), so that stores written before that check stay readable."""
        items = value if isinstance(value, list | tuple) else [value]
        if any(isinstance(v, bool) for v in items) and info.field_name is not None \
                and not _takes(cls.model_fields[info.field_name].annotation, bool):
            raise ValueError(f"expected a number or text, got {str(value).lower()}")
        return value

    def canonical_json(self) -> str:
        """JSON with sorted keys and no whitespace: equal specs give equal strings. Fields
        added after run ids were first stored are left out while at their defaults."""
        tree = self.model_dump(mode="json", context={"canonical": True})
        return json.dumps(tree, sort_keys=True, separators=(",", ":"))


def _takes(annotation: Any, kind: type) -> bool:
    """Whether a field of this type may hold a value of ``kind`` (``kind`` itself, Any, or a
    union, container, Literal or Annotated type holding it)."""
    if annotation is kind or annotation is Any:
        return True
    origin = get_origin(annotation)
    if origin is Literal:
        return any(type(arg) is kind for arg in get_args(annotation))
    if origin in (Union, UnionType, list, tuple, Annotated):
        args = get_args(annotation)
        return any(_takes(arg, kind) for arg in (args[:1] if origin is Annotated else args))
    return False


def range_problem(key: str, annotation: Any) -> str | None:
    """Why a zoo spec's range may not give field ``key`` of this type its values (None: it
    may): a range draws numbers, which a true/false or text field does not take."""
    if _takes(annotation, int) or _takes(annotation, float):
        return None
    return f"a range draws numbers, which {key} does not take: list its values instead"


def type_problem(value: Any, annotation: Any) -> str | None:
    """Why a spec file's ``value`` (a TOML or JSON value; a list: each item) does not fit a
    field of ``annotation`` without pydantic's conversions (None: it fits): TOML's true is
    not the number 1, the text '16' is not a width, and neither 1 nor 'no' is a boolean."""
    for item in value if isinstance(value, list) else [value]:
        if problem := _item_type_problem(item, annotation):
            return problem
    return None


def first_type_problem(fields: Mapping[str, Any], values: Mapping[str, Any],
                       ranged: Collection[str] = ()) -> str | None:
    """``key: why`` for the first of ``values`` that its field (``fields``: a pydantic model's
    ``model_fields``) would convert rather than take (:func:`type_problem`), or that a range
    draws (``ranged``: those keys) where the field takes no numbers (:func:`range_problem`);
    None where all fit. Keys without a field are left to the model's own validation."""
    for key, value in values.items():
        if key not in fields:
            continue
        annotation = fields[key].annotation
        problem = range_problem(key, annotation) if key in ranged else None
        if problem := problem or type_problem(value, annotation):
            return f"{key}: {problem}"
    return None


def _item_type_problem(item: Any, annotation: Any) -> str | None:
    numeric = _takes(annotation, int) or _takes(annotation, float)
    if isinstance(item, bool):
        if _takes(annotation, bool):
            return None
        return f"expected {'a number' if numeric else 'text'}, got {str(item).lower()}"
    if isinstance(item, str) and not _takes(annotation, str):
        if numeric:
            return f"expected a number, got text {item!r}"
        if _takes(annotation, bool):
            return f"expected true or false, got text {item!r}"
    if isinstance(item, int | float) and _takes(annotation, bool) and not numeric \
            and not _takes(annotation, str):
        return f"expected true or false, got {item!r}"
    return None


class DataSpec(_Spec):
    """Which data set, how it is split, how much of it is used, and how it is randomized.

    The randomization knobs follow Zhang et al. 2017 ("Understanding deep learning requires
    rethinking generalization") and Rolnick et al. 2017 ("Deep learning is robust to massive
    label noise"). Label knobs touch the training split only (the test split keeps its true
    labels); input knobs touch both splits (``corrupt_test_inputs`` can keep the test inputs
    clean for random pixels and Gaussian inputs). ``seed`` seeds everything on the data side.
    """

    name: str = Field("digits", description="a registered data source, see `gengap data list`")
    seed: Seed = Field(
        0, description="seed of the source's generator, the split, subsampling and every "
        "randomization knob"
    )
    test_fraction: float = Field(
        0.25, gt=0, lt=1, description="held-out share, for sources without a fixed test split"
    )
    train_fraction: float = Field(
        1.0, gt=0, le=1, description="stratified share of the training split that is kept"
    )
    train_size: int | None = Field(
        None, ge=1, description="training examples kept (stratified); instead of train_fraction"
    )
    classes: tuple[int, ...] = Field(
        (), description="keep only these classes (both splits), relabelled 0..k-1 in this "
        "order; empty: all"
    )
    label_noise: float = Field(
        0.0, ge=0, le=1, description="train only: each label is resampled uniformly with this "
        "probability (may return the true class)"
    )
    random_labels: bool = Field(False, description="train only: every label drawn uniformly")
    dilution: float = Field(
        0.0, ge=0, description="train only: this many extra randomly labelled copies of "
        "training inputs per clean example (Rolnick et al.'s alpha)"
    )
    shuffled_pixels: bool = Field(
        False, description="both splits: one fixed permutation of the input coordinates"
    )
    random_pixels: bool = Field(
        False, description="an independent permutation of the input coordinates per example "
        "(test split too, unless corrupt_test_inputs is false)"
    )
    gaussian_inputs: bool = Field(
        False, description="inputs replaced by Gaussian noise with the training inputs' moments "
        "(test split too, unless corrupt_test_inputs is false)"
    )
    gaussian_moments: Literal["global", "per_feature"] = Field(
        "global", description="moments matched by gaussian_inputs: one mean and variance, or "
        "one per input coordinate"
    )
    corrupt_test_inputs: bool = Field(
        True, description="random_pixels and gaussian_inputs also apply to the test split"
    )
    grayscale: bool = Field(
        False, description="both splits: RGB images to one luminance channel (ITU-R 601)"
    )
    normalize: bool = Field(True, description="standardize inputs with training-split statistics")
    normalization: Literal["global", "per_channel", "per_feature"] = Field(
        "global", description="statistics used by normalize: one mean and std, one per image "
        "channel, or one per input coordinate"
    )
    options: dict[str, Scalar] = Field(
        default_factory=dict, description="source-specific knobs, checked by the source"
    )

    @model_validator(mode="after")
    def _check_knobs(self) -> DataSpec:
        if self.train_size is not None and self.train_fraction < 1.0:
            raise ValueError("train_size and train_fraction: give one of them, not both")
        if self.random_labels and self.label_noise > 0:
            raise ValueError("random_labels and label_noise: give one of them, not both")
        inputs = [k for k in ("shuffled_pixels", "random_pixels", "gaussian_inputs")
                  if getattr(self, k)]
        if len(inputs) > 1:
            raise ValueError(f"{' and '.join(inputs)}: at most one input corruption at a time")
        if len(set(self.classes)) != len(self.classes) or any(c < 0 for c in self.classes):
            raise ValueError("classes: class numbers must be distinct and non-negative")
        if len(self.classes) == 1:
            raise ValueError("classes: keep at least two classes")
        return self


class ArchSpec(_Spec):
    """Which architecture family, and its size knobs (what each means per family is in the
    README's architecture table)."""

    family: str = Field("cnn", description="a registered architecture family")
    width: int = Field(
        16, ge=1, description="channels (cnn, nin, resnet's first stage, vgg's last block), "
        "hidden units (mlp) or model dimension (transformer)"
    )
    depth: int = Field(
        3, ge=1, description="conv layers (cnn), hidden layers (mlp), blocks (nin, vgg), "
        "residual blocks per stage (resnet) or encoder layers (transformer)"
    )
    activation: Literal["relu", "tanh", "gelu"] = "relu"
    batch_norm: bool | None = Field(
        None, description="normalization layers; None: the family's default (on for nin and "
        "resnet, off for the others)"
    )
    dropout: float = Field(0.0, ge=0, lt=1)
    dense_layers: int = Field(1, ge=0, description="hidden dense layers after the convs (vgg)")
    dense_width: int = Field(128, ge=1, description="units of each hidden dense layer (vgg)")
    heads: int = Field(2, ge=1, description="attention heads (transformer)")
    options: dict[str, Scalar] = Field(
        default_factory=dict, description="family-specific knobs, checked by the family "
        "(keras: the PGDL task folder and the model's hyperparameters; smallcnn: the Small "
        "CNN Zoo folder and weight row)"
    )


class TrainSpec(_Spec):
    """How one network is fitted: optimizer, learning-rate schedule, augmentation, stopping
    rules and which epochs' weights are kept."""

    optimizer: Literal["sgd", "adam", "adamw", "rmsprop"] = "sgd"
    lr: float = Field(0.05, gt=0, description="peak learning rate")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum")
    weight_decay: float = Field(
        0.0, ge=0, description="L2 penalty (sgd, adam, rmsprop); decoupled decay (adamw)"
    )
    batch_size: int = Field(64, ge=1)
    schedule: Literal["constant", "step", "cosine"] = "constant"
    lr_steps: tuple[int, ...] = Field(
        (), description="epochs after which the step schedule multiplies the rate by lr_gamma"
    )
    lr_gamma: float = Field(0.1, gt=0, le=1, description="factor of each step of the schedule")
    warmup_epochs: float = Field(
        0.0, ge=0, description="linear warm-up to lr over this many epochs (step k of w "
        "warm-up steps takes lr·k/w)"
    )
    flip: bool = Field(False, description="random horizontal flips of image inputs")
    crop: int = Field(
        0, ge=0, description="random crops of image inputs zero-padded by this many pixels"
    )
    max_epochs: int = Field(100, ge=1)
    max_steps: int | None = Field(None, ge=1, description="optimizer-step bound (None: none)")
    target_ce: float = Field(
        0.01, ge=0, description="stop once training cross-entropy is at or below this"
    )
    checkpoints: tuple[int, ...] = Field(
        (), description="epochs whose weights are kept besides the initial and final ones"
    )
    eval_every: int = Field(
        1, ge=1,
        description="evaluate both splits every this many epochs (and at the last one); "
        "target_ce and the cross-entropy milestones are checked only then",
    )
    eval_per_decade: int | None = Field(
        None, ge=1,
        description="instead of eval_every: evaluate at this many log-spaced epochs per "
        "decade (1, 2, 3, ... rounded from 10^(k/n)) and at the last one",
    )

    @model_validator(mode="after")
    def _check_epochs(self) -> TrainSpec:
        for name in ("lr_steps", "checkpoints"):
            values = getattr(self, name)
            if any(e < 1 for e in values) or list(values) != sorted(set(values)):
                raise ValueError(f"{name}: epochs must be increasing and at least 1")
        if self.eval_every > 1 and self.eval_per_decade is not None:
            raise ValueError("eval_every and eval_per_decade: give one of them, not both")
        return self

    @model_serializer(mode="wrap")
    def _leave_out_defaults(
        self, handler: SerializerFunctionWrapHandler, info: SerializationInfo
    ) -> dict[str, Any]:
        # In the canonical JSON (the run id) the evaluation schedule is left out at its
        # defaults, so the ids of runs stored before it existed stay valid.
        tree = handler(self)
        if info.context and info.context.get("canonical"):
            for name in ("eval_every", "eval_per_decade"):
                if getattr(self, name) == type(self).model_fields[name].default:
                    tree.pop(name, None)
        return tree

    def evaluates(self, epoch: int) -> bool:
        """Whether both splits are evaluated after ``epoch`` on the regular schedule (the
        trainer also evaluates the last epoch, whatever ended it)."""
        if self.eval_per_decade is None:
            return epoch % self.eval_every == 0
        n = self.eval_per_decade
        # epoch is on the grid when some k has round(10^(k/n)) == epoch
        k = round(n * math.log10(epoch))
        return any(round(10 ** (j / n)) == epoch for j in (k - 1, k, k + 1) if j >= 0)


Precision = Literal["auto", "float32", "bfloat16"]  # of the Monte Carlo passes (MeasureOptions)
PRECISIONS: tuple[str, ...] = get_args(Precision)


class MeasureOptions(_Spec):
    """Knobs of the measures that search or sample (PAC-Bayes σ′, sharpness α′, gradient noise).
    The defaults follow Jiang et al. 2020 and the reference implementation of Dziugaite et al.
    2020 (deviation 0.1, tolerance 0.01, 10 Monte Carlo draws, 15 search steps, ε = 1e-3)."""

    deviation: float = Field(0.1, gt=0, lt=1, description="training-accuracy drop that defines "
                             "σ′ and α′")
    tolerance: float = Field(0.01, gt=0, description="a probe is accepted when the drop is "
                             "within this of the target")
    search_depth: int = Field(15, ge=1, description="most full probes of one σ′ or α′ search "
                              "(the cheap bracketing screens aside)")
    search_upper: float = Field(2.0, gt=0, description="first scale screened: the "
                                "bracket is searched down (or up) from it by factors of 4")
    mc_draws: int = Field(10, ge=1, description="noise draws per Monte Carlo round (one "
                          "batched forward)")
    mc_chunk: int = Field(128, ge=1, description="training examples per draw and round")
    mc_max_rounds: int = Field(4, ge=1, description="most full Monte Carlo rounds per "
                               "probe (after a screening round)")
    confidence: float = Field(0.95, gt=0, lt=1, description="level of the interval that stops "
                              "a probe's sampling early")
    subset: int | None = Field(None, ge=1, description="draw Monte Carlo examples from this "
                               "many training examples (None: all)")
    mag_eps: float = Field(1e-3, gt=0, description="ε of the magnitude-aware noise and box")
    delta: float = Field(0.1, gt=0, lt=1, description="δ of the bounds")
    ascent_steps: int = Field(10, ge=1, description="projected gradient-ascent steps per probe")
    ascent_warm_steps: int | None = Field(
        None, ge=1, description="if set, probes after the first start from the previous "
        "probe's worst perturbation (rescaled) and take this many steps: cheaper, but a "
        "different ascent than the study's (α′ moves); None: every probe starts cold")
    ascent_batch: int = Field(256, ge=1, description="examples per ascent step")
    ascent_restarts: int = Field(1, ge=1, description="random starts per probe (worst kept)")
    grad_batch: int = Field(32, ge=1, description="minibatch size of the gradient-noise measure")
    grad_batches: int = Field(32, ge=2, description="minibatches of the gradient-noise measure")
    seed: int = Field(0, ge=0, le=MAX_SEED, description="seed of every random draw of the "
                      "measures")
    precision: Precision = Field(
        "auto", description="arithmetic of the Monte Carlo forward passes (σ′ and α′ "
        "searches, module criticality) of a float32 model: bfloat16 autocast, float32, or "
        "auto: bfloat16 where the device computes it natively and the model costs at least "
        "1 MFLOP per example (gengap.measures.precision); other models keep their dtype")


class RunSpec(_Spec):
    """Everything that determines one run: same spec and seed, same result on the CPU."""

    data: DataSpec = DataSpec()
    arch: ArchSpec = ArchSpec()
    train: TrainSpec = TrainSpec()
    seed: Seed = Field(0, description="seed of initialization and data order")

    @property
    def run_id(self) -> str:
        """First 16 hex digits of the SHA-256 of the canonical JSON."""
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()[:16]


class ZooSpec(_Spec):
    """A population of runs: a base :class:`RunSpec` plus axes, crossed with seeds.

    ``axes`` maps a dotted field path (``"arch.width"``, ``"data.options.noise"``) to the values
    it takes; ``ranges`` maps a path to a continuous :class:`Range`. The ``grid`` design trains
    the full product of all axes and seeds (no ranges allowed); the ``random`` design draws
    ``samples`` points (each axis uniformly among its values, each range from its
    distribution, seeded by ``sample_seed``) and trains each point once per seed.
    """

    name: str = Field("zoo", description="shown by every command; not blank")
    design: Literal["grid", "random"] = "grid"
    seeds: tuple[Seed, ...] = Field((0,), min_length=1)
    samples: int | None = Field(None, ge=1, le=10_000_000,
                                description="points drawn by the random design")
    sample_seed: int = Field(0, description="seed of the random design's draws")
    data: DataSpec = DataSpec()
    arch: ArchSpec = ArchSpec()
    train: TrainSpec = TrainSpec()
    axes: dict[str, tuple[Any, ...]] = Field(default_factory=dict)
    ranges: dict[str, Range] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _named(cls, name: str, info: ValidationInfo) -> str:
        if not name.strip() and not _stored(info):
            raise ValueError("a zoo needs a name that is not blank")
        return name

    @model_validator(mode="after")
    def _check_axes(self, info: ValidationInfo) -> ZooSpec:
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
                    raise ValueError(f"{path} = {value!r}: {_message(err)}") from None
        if self.design == "grid" and self.ranges:  # before the draws: a grid draws none
            raise ValueError(f"{next(iter(self.ranges))}: a range needs design = \"random\"")
        for path, span in self.ranges.items():
            if path in self.axes:
                raise ValueError(f"{path}: both a list and a range")
            # both ends and a point inside: a float range on an integer field fails only there
            for value in (span.draw(0.0), span.draw(0.3717), span.draw(1.0 - 1e-12)):
                try:
                    RunSpec.model_validate(override(base, {path: value}))
                except ValidationError as err:
                    # a float drawn for an integer field: the user wanted an integer range
                    hint = " (a range of integers is int_uniform or int_log_uniform)" \
                        if err.errors()[0]["type"] == "int_from_float" else ""
                    raise ValueError(f"{path} = {value!r}: {_message(err)}{hint}") from None
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError("seeds: a seed is listed twice")
        if self.design == "grid" and self.samples is not None:
            raise ValueError("samples: needs design = \"random\"")
        # a grid draws nothing: a seed for its draws is a mistaken design, said at once
        if self.design == "grid" and self.sample_seed != 0 and not _stored(info):
            raise ValueError("sample_seed: a seed for the random design's draws; this zoo's "
                             "design is \"grid\" (set design = \"random\" and samples = N)")
        if self.design == "random" and self.samples is None:
            raise ValueError("samples: the random design needs samples = N")
        return self

    @property
    def hyperparameters(self) -> list[str]:
        """The axis and range names, in the order they were given."""
        return [*self.axes, *self.ranges]

    def base(self) -> RunSpec:
        return RunSpec(data=self.data, arch=self.arch, train=self.train)

    def runs(self) -> list[RunSpec]:
        """Every run of the zoo, in a fixed order (axes as given, seeds innermost). A random
        design that draws the same point twice trains it once. Expanded once per spec (a
        6,561-run grid takes about 2 s), kept by the spec's canonical JSON (outside the model,
        so that equal specs stay equal; a copy with other fields is another key)."""
        key = self.canonical_json()
        if key not in _EXPANDED:
            _EXPANDED[key] = tuple(self._expand())
            while len(_EXPANDED) > EXPANDED_KEPT:
                _EXPANDED.popitem(last=False)
        _EXPANDED.move_to_end(key)
        return list(_EXPANDED[key])

    def _expand(self) -> list[RunSpec]:
        base = self.base().model_dump()
        runs: dict[str, RunSpec] = {}
        for values in self._points():
            for seed in self.seeds:
                try:
                    run = RunSpec.model_validate(override(base, {**values, "seed": seed}))
                except ValidationError as err:  # values valid alone, not together
                    point = ", ".join(f"{k} = {v!r}" for k, v in {**values, "seed": seed}.items())
                    raise GengapError(f"the run with {point}: {first_problem(err)}") from None
                runs.setdefault(run.run_id, run)
        return list(runs.values())

    def _points(self) -> list[dict[str, Any]]:
        names = list(self.axes)
        if self.design == "grid":
            combos = itertools.product(*self.axes.values())
            return [dict(zip(names, combo, strict=True)) for combo in combos]
        rng = random.Random(self.sample_seed)  # stdlib: stable across numpy versions
        points = []
        for _ in range(self.samples or 0):
            point = {name: rng.choice(values) for name, values in self.axes.items()}
            point.update({name: span.draw(rng.random()) for name, span in self.ranges.items()})
            points.append(point)
        return points


class Range(_Spec):
    """A continuous axis of the random design: ``uniform`` or ``log_uniform`` floats,
    ``int_uniform`` or ``int_log_uniform`` integers, between ``low`` and ``high`` inclusive."""

    kind: Literal["uniform", "log_uniform", "int_uniform", "int_log_uniform"]
    low: float
    high: float

    @model_validator(mode="after")
    def _check(self, info: ValidationInfo) -> Range:
        if not self.low < self.high:
            raise ValueError(f"{self.kind} range needs low < high, got [{self.low}, {self.high}]")
        if self.kind.endswith("log_uniform") and self.low <= 0:
            raise ValueError(f"{self.kind} range needs low > 0, got {self.low}")
        if self.kind.startswith("int_") and not _stored(info) and not (
                self.low.is_integer() and self.high.is_integer()):
            raise ValueError(f"{self.kind} range needs integer ends, got [{self.low:g}, "
                             f"{self.high:g}] (a range of floats is uniform or log_uniform)")
        return self

    def draw(self, u: float) -> float | int:
        """The value at quantile ``u`` in [0, 1): floats keep 6 significant digits."""
        if self.kind == "uniform":
            return float(f"{self.low + u * (self.high - self.low):.6g}")
        if self.kind == "log_uniform":
            return float(f"{math.exp(math.log(self.low) + u * math.log(self.high / self.low)):.6g}")
        low, high = math.ceil(self.low), math.floor(self.high)
        if self.kind == "int_uniform":
            return min(high, low + int(u * (high - low + 1)))
        return min(high, int(math.exp(math.log(low) + u * math.log((high + 1) / low))))


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


def _stored(info: ValidationInfo) -> bool:
    """Whether a spec is read back from a store (``context={"stored": True}``): checks added
    after it was written do not make it unreadable."""
    return bool(info.context and info.context.get("stored"))


def _message(err: ValidationError) -> str:
    """The first problem's message, without pydantic's "Value error, " prefix."""
    return err.errors()[0]["msg"].removeprefix("Value error, ")


def first_problem(err: ValidationError) -> str:
    """One line for a pydantic error: where (dotted) and what."""
    problem = err.errors()[0]
    where = ".".join(str(part) for part in problem["loc"])
    message = _message(err)
    if problem["type"] == "extra_forbidden":
        message = "unknown key"
    return f"{where}: {message}" if where else message
