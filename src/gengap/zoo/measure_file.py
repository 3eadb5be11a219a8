"""Measuring one network given as a safetensors file, outside any zoo, and the ``key=value``
syntax of ``--arch`` and ``--data``."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from gengap.data import Splits, load
from gengap.data.sources import option_type_problem
from gengap.errors import GengapError
from gengap.measures import MeasureContext, Profile, profile
from gengap.measures.compute import split_by_needs
from gengap.measures.registry import named
from gengap.models import build_for
from gengap.models.weight_check import load_checked
from gengap.specs import ArchSpec, DataSpec, MeasureOptions, first_problem, first_type_problem

# What a weight file offers the measures outside a zoo (no records, no seed partner), and
# where each other need comes from
FILE_HAS = frozenset({"weights", "gradients", "train_data", "input_shape"})
SOURCES = {"init_weights": "--init (the initial weights)",
           "trajectory": "a zoo run's training records",
           "second_model": "a second zoo run differing only in seed"}


def file_measures(
    names: str | list[str] | None, init: bool
) -> tuple[list[str], dict[str, frozenset[str]]]:
    """The chosen measures one weight file can give (``init``: with initial weights), and
    those left out with what each lacks. A measure named one by one that cannot be computed,
    or a choice of which none can, is a one-line :class:`GengapError` saying what it lacks."""
    have = set(FILE_HAS) | ({"init_weights"} if init else set())
    chosen, left_out = split_by_needs(names, have)
    refused = {n: lack for n, lack in left_out.items() if n in named(names) or not chosen}
    if refused:
        raise GengapError(f"cannot compute on a single model: {lacking_words(refused)}")
    return chosen, left_out


def lacking_words(left_out: dict[str, frozenset[str]]) -> str:
    """``a, b need --init (...); c needs a zoo run's training records``."""
    by_need: dict[str, list[str]] = {}
    for name, lack in left_out.items():
        by_need.setdefault(" and ".join(SOURCES.get(n, n) for n in sorted(lack)),
                           []).append(name)
    return "; ".join(f"{', '.join(names)} need{'s' if len(names) == 1 else ''} {need}"
                     for need, names in by_need.items())


def _top_level_items(text: str) -> list[str]:
    """``text`` split at the commas outside brackets: ``classes=[0,1],seed=2`` is two items."""
    items, depth, start = [], 0, 0
    for i, char in enumerate(text):
        depth += (char in "[{") - (char in "]}")
        if char == "," and depth == 0:
            items.append(text[start:i])
            start = i + 1
    return [*items, text[start:]]


def parse_spec_arg(text: str, kind: type[ArchSpec] | type[DataSpec], table: str) -> Any:
    """An :class:`ArchSpec` or :class:`DataSpec` from ``--arch``/``--data``: a TOML or JSON
    file (its fields at the top level or under ``[table]``), ``key=value,key=value`` (values
    read as JSON when they parse, else as strings, which pydantic converts as it can; commas
    inside brackets belong to the value: ``classes=[0,1]``), or for data a bare source name.
    A file's values keep their types, as a zoo spec's do (:func:`gengap.specs.type_problem`)."""
    path = Path(text)
    suffix = path.suffix.lower()
    if suffix in (".toml", ".json"):
        if not path.is_file():
            raise GengapError(f"{path}: no such file")
        try:
            raw = (tomllib.loads(path.read_text()) if suffix == ".toml"
                   else json.loads(path.read_text()))
        except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as err:
            raise GengapError(f"{path}: not valid {path.suffix[1:].upper()} ({err})") from None
        except OSError as err:
            raise GengapError(f"{path}: cannot read ({err.strerror})") from None
        fields = raw.get(table, raw) if isinstance(raw, dict) else raw
        where = str(path)
        if isinstance(fields, dict) and (problem := first_type_problem(kind.model_fields,
                                                                       fields)):
            raise GengapError(f"{where}: {problem}")
        options = fields.get("options") if isinstance(fields, dict) else None
        if kind is DataSpec and isinstance(options, dict) and (problem := option_type_problem(
                str(fields.get("name", DataSpec.model_fields["name"].default)), options)):
            raise GengapError(f"{where}: options.{problem}")
    elif "=" not in text and kind is DataSpec:
        fields, where = {"name": text}, repr(text)
    else:
        fields, where = {}, repr(text)
        for item in filter(None, (part.strip() for part in _top_level_items(text))):
            key, sep, value = item.partition("=")
            if not sep:
                raise GengapError(f"{text!r}: expected key=value, got {item!r}")
            if key.strip() in fields:  # the last one would silently win
                raise GengapError(f"{text!r}: {key.strip()} is given twice")
            try:
                fields[key.strip()] = json.loads(value)
            except json.JSONDecodeError:
                fields[key.strip()] = value.strip()
    try:
        return kind.model_validate(fields)
    except ValidationError as err:
        raise GengapError(f"{where}: {first_problem(err)}") from None


def load_network(path: Path, arch: ArchSpec, splits: Splits) -> nn.Module:
    """The network of ``arch`` with the weights of safetensors file ``path``."""
    if not path.is_file():
        raise GengapError(f"{path}: no such weight file")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise GengapError(f"{path}: unreadable weight file ({err})") from None
    return load_checked(build_for(arch, splits), state, str(path), f"{arch.family} network")


def measure_file(
    weights: Path, arch: ArchSpec, data: DataSpec, names: str | list[str] | None = None,
    init: Path | None = None, device: str = "auto", data_dir: str | Path | None = None,
    options: MeasureOptions | None = None,
) -> Profile:
    """Measure one network: its values and where the time went. Of ``names`` (default: all),
    the measures one file can give (:func:`file_measures`: those needing initial weights only
    with ``init``; none needing training records or a second run); one of them named alone
    that it cannot give is an error."""
    chosen, _ = file_measures(names, init is not None)  # before the data and networks load
    return measure_chosen(weights, arch, data, chosen, init, device, data_dir, options)


def measure_chosen(
    weights: Path, arch: ArchSpec, data: DataSpec, chosen: list[str], init: Path | None = None,
    device: str = "auto", data_dir: str | Path | None = None,
    options: MeasureOptions | None = None,
) -> Profile:
    """:func:`measure_file` for measures already chosen by :func:`file_measures` (the CLI
    chooses first, to list what is left out)."""
    splits = load(data, data_dir)
    ctx = MeasureContext(
        load_network(Path(weights), arch, splits),
        init_model=load_network(Path(init), arch, splits) if init else None,
        x_train=splits.x_train, y_train=splits.y_train, device=device, options=options,
    )
    return profile(ctx, chosen)
