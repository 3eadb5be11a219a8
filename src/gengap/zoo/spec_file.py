"""Reading a zoo spec from TOML, with one-line errors that name the file, the key and the problem.

Format: top-level ``name``, ``design`` (``grid`` or ``random``), ``seeds``, and for the random
design ``samples`` and ``sample_seed``; tables ``[data]``, ``[arch]``, ``[train]`` (and
``[data.options]``) with :mod:`gengap.specs` fields. A list where the field takes one value is an
axis: ``width = [8, 32]`` trains both (grid) or draws among them (random). An inline table with
one key ``uniform``, ``log_uniform``, ``int_uniform`` or ``int_log_uniform`` and a ``[low, high]``
pair is a continuous range of the random design: ``lr = { log_uniform = [1e-3, 0.1] }``.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any, get_origin

from pydantic import ValidationError

from gengap.errors import GengapError
from gengap.specs import (
    ArchSpec,
    DataSpec,
    RunSpec,
    TrainSpec,
    ZooSpec,
    first_problem,
    range_problem,
    type_problem,
)

SECTIONS = {"data": DataSpec, "arch": ArchSpec, "train": TrainSpec}
RANGE_KINDS = ("uniform", "log_uniform", "int_uniform", "int_log_uniform")


def load_zoo_spec(path: str | Path) -> ZooSpec:
    """Parse and validate a zoo TOML file; raise :class:`GengapError` on any problem."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise GengapError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise GengapError(f"{path}: is a folder, expected a zoo spec (.toml)") from None
    except UnicodeDecodeError:
        raise GengapError(f"{path}: not a text file") from None
    except tomllib.TOMLDecodeError as err:
        raise GengapError(f"{path}: invalid TOML: {err}") from None
    return parse_zoo_spec(raw, source=str(path))


def parse_zoo_spec(raw: dict[str, Any], source: str = "<spec>") -> ZooSpec:
    """Validate a zoo spec given as nested dicts (the parsed TOML)."""
    fields: dict[str, Any] = {}
    axes: dict[str, tuple[Any, ...]] = {}
    ranges: dict[str, dict[str, Any]] = {}
    for key in ("axes", "ranges"):
        if key in raw:
            raise GengapError(
                f"{source}: unknown key {key!r} (put lists and ranges in [data], [arch], [train])"
            )
    for key, value in raw.items():
        if key in SECTIONS and isinstance(value, dict):
            fields[key] = _split_axes(key, value, SECTIONS[key], axes, ranges, source)
        else:
            field = ZooSpec.model_fields.get(key)
            if field is not None:
                _check_type(source, key, value, field.annotation)
            fields[key] = value
    if isinstance(fields.get("seeds"), int):
        fields["seeds"] = [fields["seeds"]]
    try:
        zoo = ZooSpec.model_validate({**fields, "axes": axes, "ranges": ranges})
    except ValidationError as err:
        raise GengapError(f"{source}: {_toml_place(first_problem(err))}") from None
    check_runs(zoo, source)
    return zoo


def check_runs(zoo: ZooSpec, source: str) -> None:
    """Raise a one-line :class:`GengapError` naming ``source`` unless every run of ``zoo`` can
    start: its fields valid together (axis values and range draws are each checked alone when
    the spec is built), its checkpoints and ``lr_steps`` within the longest max_epochs, its
    architecture family and data source registered, the source's options valid. Nothing is
    written before this passes, so a typo leaves no zoo folder."""
    import gengap.interop  # noqa: F401  (registers the imported zoos' families and sources)
    from gengap.data.sources import option_type_problem, sources
    from gengap.data.splits import source_options
    from gengap.models.families import families

    try:
        runs = zoo.runs()
    except GengapError as err:
        raise GengapError(f"{source}: {err}") from None
    # max_steps only ends a run sooner, so a checkpoint after every run's max_epochs is never
    # kept (one within the longest runs is theirs: shorter runs of a max_epochs axis skip it)
    longest = max((run.train.max_epochs for run in runs), default=0)
    late = sorted({e for run in runs for e in run.train.checkpoints if e > longest})
    if late:
        raise GengapError(f"{source}: [train] checkpoints: epoch {late[0]} is after "
                          f"max_epochs = {longest}, so it is never reached")
    _check_lr_steps(runs, source)
    if long := next((run.train for run in runs
                     if run.train.warmup_epochs > run.train.max_epochs), None):
        raise GengapError(f"{source}: [train] warmup_epochs: {long.warmup_epochs:g} is past "
                          f"max_epochs = {long.max_epochs}, so the rate never reaches lr")
    for family in sorted({run.arch.family for run in runs}):
        _named(source, "[arch] family: ", families.get, family)
    _check_axes_are_read(zoo, runs, source)
    ranged = {path.removeprefix("data.options.") for path in zoo.ranges
              if path.startswith("data.options.")}
    for data in {run.data.canonical_json(): run.data for run in runs}.values():
        _named(source, "[data] name: ", sources.get, data.name)
        if problem := option_type_problem(data.name, data.options, ranged):
            raise GengapError(f"{source}: [data.options] {problem}")
        _named(source, "[data.options] ", source_options, data)  # its message names the option


def _check_lr_steps(runs: list[RunSpec], source: str) -> None:
    """Refuse ``lr_steps`` that no run would act on: given where no run has the step schedule,
    or at or after the longest max_epochs of those that do (a step after epoch e acts from
    epoch e + 1; one within the longest runs is theirs, as with checkpoints)."""
    stepped = [run for run in runs if run.train.schedule == "step"]
    if not stepped:
        if any(run.train.lr_steps for run in runs):
            raise GengapError(f'{source}: [train] lr_steps: only schedule = "step" uses them, '
                              "and no run has that schedule")
        return
    longest = max(run.train.max_epochs for run in stepped)
    late = sorted({e for run in stepped for e in run.train.lr_steps if e >= longest})
    if late:
        raise GengapError(f"{source}: [train] lr_steps: epoch {late[0]} is not before "
                          f"max_epochs = {longest}, so that step never acts")


def _check_axes_are_read(zoo: ZooSpec, runs: list[RunSpec], source: str) -> None:
    """Refuse a list or range over an [arch] or [train] field that some run does not read
    (``heads`` of an mlp, ``momentum`` with Adam): its runs would be the same network under
    different names, counted as distinct runs and taken for an axis by the evaluation."""
    # one run of each kind that decides what is read
    kinds = {(r.arch.family, r.train.optimizer, r.train.schedule, bool(r.train.lr_steps)): r
             for r in runs}.values()
    for path in zoo.hyperparameters:
        section, _, field = path.partition(".")
        for run in kinds:
            if (why := _unread_field(section, field, run)) is not None:
                raise GengapError(f"{source}: [{section}] {field}: {why[0]}, so its runs would "
                                  f"differ in name only{why[1]}")


def _unread_field(section: str, field: str, run: RunSpec) -> tuple[str, str] | None:
    """Why ``run`` does not read ``section.field``, and what it reads instead (or ""); None
    where it does. A family reads its knobs (``family_knobs``, the registry; and always its
    options), ``momentum`` is SGD's alone, ``lr_gamma`` only the step schedule's with steps
    to take."""
    from gengap.models.families import family_knobs  # the models import torch: only here

    if section == "arch" and field != "family" and not field.startswith("options."):
        knobs = family_knobs.get(run.arch.family)
        if knobs is not None and field not in knobs:
            reads = ", ".join(knobs) if knobs else "only its options"
            return f"the {run.arch.family} family does not use it", f" (it reads {reads})"
    train = run.train
    if section == "train" and field == "momentum" and train.optimizer != "sgd":
        return f"the {train.optimizer} optimizer does not use it", ""
    if section == "train" and field == "lr_gamma" and not (train.schedule == "step"
                                                            and train.lr_steps):
        return "only the step schedule with lr_steps uses it", ""
    return None


def _named(source: str, place: str, check: Callable[[Any], Any], value: Any) -> None:
    """``check(value)``, its one-line error prefixed with the file and the key."""
    try:
        check(value)
    except GengapError as err:
        raise GengapError(f"{source}: {place}{err}") from None


def _split_axes(
    section: str,
    table: dict[str, Any],
    spec: type,
    axes: dict[str, tuple[Any, ...]],
    ranges: dict[str, dict[str, Any]],
    source: str,
) -> dict[str, Any]:
    """Move list values of single-valued fields out of ``table`` into ``axes``, and range
    tables into ``ranges``."""
    scalars: dict[str, Any] = {}
    for key, value in table.items():
        field = spec.model_fields.get(key)
        takes_list = field is not None and get_origin(field.annotation) in (list, tuple)
        takes_table = field is not None and get_origin(field.annotation) is dict
        path = f"{section}.{key}"
        where = f"[{section}] {key}"
        if _is_range(value):
            if takes_table:  # [data] options = { uniform = ... }
                raise GengapError(f"{source}: {where}: a range draws numbers, and {key} is a "
                                  "table: give the range to one of its keys")
            if field is not None and (problem := range_problem(key, field.annotation)):
                raise GengapError(f"{source}: {where}: {problem}")
            ranges[path] = _range(path, value, source)
        elif isinstance(value, dict) and field is not None and not takes_table:
            raise GengapError(f"{source}: [{section}] {key}: a range is one of "
                              f"{', '.join(RANGE_KINDS)} = [low, high], got "
                              f"{{{', '.join(value) or 'nothing'}}}")
        elif isinstance(value, dict) and takes_table:
            nested = {}
            for k, v in value.items():
                if isinstance(v, list):
                    axes[f"{path}.{k}"] = tuple(v)
                elif _is_range(v):
                    ranges[f"{path}.{k}"] = _range(f"{path}.{k}", v, source)
                else:
                    nested[k] = v
            scalars[key] = nested
        elif isinstance(value, list) and not takes_list:
            for item in value if field is not None else []:  # an unknown key: refused later
                _check_type(source, f"{where} = {item!r}", item, field.annotation)
            axes[path] = tuple(value)
        else:
            if field is not None:
                _check_type(source, where, value, field.annotation)
            scalars[key] = value
    return scalars


def _check_type(source: str, where: str, value: Any, annotation: Any) -> None:
    """Refuse a value whose type pydantic would convert to the field's: the file says what it
    means (:func:`gengap.specs.type_problem`)."""
    if problem := type_problem(value, annotation):
        raise GengapError(f"{source}: {where}: {problem}")


def _is_range(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and next(iter(value)) in RANGE_KINDS


def _range(path: str, value: dict[str, Any], source: str) -> dict[str, Any]:
    kind, bounds = next(iter(value.items()))
    if not (isinstance(bounds, list) and len(bounds) == 2
            and all(isinstance(b, int | float) and not isinstance(b, bool) for b in bounds)):
        section, _, rest = path.partition(".")
        raise GengapError(f"{source}: [{section}] {rest}: {kind} needs [low, high], got {bounds!r}")
    return {"kind": kind, "low": bounds[0], "high": bounds[1]}


def _toml_place(problem: str) -> str:
    """``arch.width: ...`` -> ``[arch] width: ...`` so the user finds it in the file."""
    head, sep, rest = problem.partition(": ")
    if not sep:
        return problem
    if head == "axes":  # the axis validator already names the dotted path
        head, sep, rest = rest.partition(": ")
    head = head.removeprefix("ranges.")
    parts = head.split(" = ")[0].split(".")
    if len(parts) >= 2 and parts[0] in SECTIONS:
        place = f"[{parts[0]}] {'.'.join(parts[1:])}"
        value = head.partition(" = ")[2]
        return f"{place}{' = ' + value if value else ''}: {rest}"
    if parts == [head] and head in SECTIONS:  # a check of the whole table: "lr_steps: ..."
        return f"[{head}] {rest}"
    return f"{head}: {rest}"
