"""Reading a zoo spec from TOML, with one-line errors that name the file, the key and the problem.

Format: top-level ``name``, ``design`` and ``seeds``; tables ``[data]``, ``[arch]``, ``[train]``
(and ``[data.options]``) with :mod:`gengap.specs` fields. A list where the field takes one value
is an axis of the grid: ``width = [8, 32]`` trains both.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, get_origin

from pydantic import ValidationError

from gengap.errors import GengapError
from gengap.specs import ArchSpec, DataSpec, TrainSpec, ZooSpec, first_problem

SECTIONS = {"data": DataSpec, "arch": ArchSpec, "train": TrainSpec}


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
    for key, value in raw.items():
        if key in SECTIONS and isinstance(value, dict):
            fields[key] = _split_axes(key, value, SECTIONS[key], axes)
        else:
            fields[key] = value
    if "axes" in raw:
        raise GengapError(f"{source}: unknown key 'axes' (put lists in [data], [arch], [train])")
    if isinstance(fields.get("seeds"), int):
        fields["seeds"] = [fields["seeds"]]
    try:
        return ZooSpec.model_validate({**fields, "axes": axes})
    except ValidationError as err:
        raise GengapError(f"{source}: {_toml_place(first_problem(err))}") from None


def _split_axes(
    section: str, table: dict[str, Any], spec: type, axes: dict[str, tuple[Any, ...]]
) -> dict[str, Any]:
    """Move list values of single-valued fields out of ``table`` into ``axes``."""
    scalars: dict[str, Any] = {}
    for key, value in table.items():
        field = spec.model_fields.get(key)
        takes_list = field is not None and get_origin(field.annotation) in (list, tuple)
        if isinstance(value, dict) and field is not None and not takes_list:
            nested = {k: v for k, v in value.items() if not isinstance(v, list)}
            axes.update(
                {f"{section}.{key}.{k}": tuple(v) for k, v in value.items() if isinstance(v, list)}
            )
            scalars[key] = nested
        elif isinstance(value, list) and not takes_list:
            axes[f"{section}.{key}"] = tuple(value)
        else:
            scalars[key] = value
    return scalars


def _toml_place(problem: str) -> str:
    """``arch.width: ...`` -> ``[arch] width: ...`` so the user finds it in the file."""
    head, sep, rest = problem.partition(": ")
    if not sep:
        return problem
    if head == "axes":  # the axis validator already names the dotted path
        head, sep, rest = rest.partition(": ")
    parts = head.split(" = ")[0].split(".")
    if len(parts) >= 2 and parts[0] in SECTIONS:
        place = f"[{parts[0]}] {'.'.join(parts[1:])}"
        value = head.partition(" = ")[2]
        return f"{place}{' = ' + value if value else ''}: {rest}"
    return f"{head}: {rest}"
