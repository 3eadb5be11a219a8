"""``gengap data list`` and ``gengap data show NAME [--knob value ...]``.

Knobs are given as ``--name value`` (or ``--name=value``; a bare ``--flag`` is true and
``--no-flag`` false), with dashes or underscores. A knob is either a common :class:`DataSpec`
field (``--label-noise 0.2``, ``--classes 0,1,2``) or an option of the chosen source
(``--window 3 --aggregation min``).
"""

from __future__ import annotations

from typing import Annotated, Any, get_origin

import pandas as pd
import typer
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from rich.markup import escape

from gengap.cli.console import console, frame_table
from gengap.cli.options import DataDir
from gengap.errors import GengapError
from gengap.specs import DataSpec, first_problem

data_app = typer.Typer(help="Data sources: list them, look at one.", no_args_is_help=True)

COMMON = [name for name in DataSpec.model_fields if name not in ("name", "options")]


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "(required)"
    value = field.get_default(call_default_factory=True)
    if isinstance(value, tuple):
        return ",".join(map(str, value)) or "()"
    return str(value)


@data_app.command("list")
def data_list() -> None:
    """Every data source with its own knobs and their defaults, then the common knobs."""
    from gengap.data import sources

    rows = []
    for name in sources:
        source = sources.get(name)
        knobs = ", ".join(
            f"{key}={_default(field)}" for key, field in source.options.model_fields.items()
        )
        rows.append({
            "source": name,
            "files": "local" if source.needs_files else "embedded",
            "what": source.description,
            "knobs": knobs or "–",
        })
    console.print(frame_table(pd.DataFrame(rows), title="gengap data sources"))
    common = [
        {"knob": key, "default": _default(DataSpec.model_fields[key]),
         "meaning": DataSpec.model_fields[key].description or ""}
        for key in COMMON
    ]
    console.print(frame_table(pd.DataFrame(common), title="common knobs (any source)"))


def parse_knobs(args: list[str]) -> dict[str, str]:
    """``["--window", "3", "--wrap", "--no-normalize"]`` -> ``{"window": "3", "wrap": "true",
    "normalize": "false"}``."""
    knobs: dict[str, str] = {}
    i = 0
    while i < len(args):
        token = args[i]
        if not token.startswith("--") or len(token) < 3:
            raise GengapError(f"unexpected argument {token!r} (knobs look like --name value)")
        key, sep, value = token[2:].partition("=")
        key = key.replace("-", "_")
        if not sep:
            if i + 1 < len(args) and not args[i + 1].startswith("--"):
                value, i = args[i + 1], i + 1
            elif key.startswith("no_"):
                key, value = key[3:], "false"
            else:
                value = "true"
        if key in knobs:  # the last one would silently win
            raise GengapError(f"--{key.replace('_', '-')} is given twice")
        knobs[key] = value
        i += 1
    return knobs


def spec_from_knobs(name: str, knobs: dict[str, str]) -> DataSpec:
    """The :class:`DataSpec` of source ``name`` with ``knobs`` (strings, as typed) routed to
    the common fields or to the source's options; unknown knobs are an error."""
    from gengap.data import sources

    source = sources.get(name)
    common: dict[str, Any] = {}
    options: dict[str, str] = {}
    for key, value in knobs.items():
        if key in COMMON:
            tuple_field = get_origin(DataSpec.model_fields[key].annotation) is tuple
            common[key] = [v for v in value.split(",") if v.strip()] if tuple_field else value
        elif key in source.options.model_fields:
            options[key] = value
        else:
            own = ", ".join(f"--{k.replace('_', '-')}" for k in source.options.model_fields)
            raise GengapError(
                f"unknown knob --{key.replace('_', '-')} for data source {name!r} "
                f"(its own: {own or 'none'}; common: see `gengap data list`)"
            )
    typed_options = _typed_options(name, source.options, options)
    try:
        return DataSpec.model_validate({**common, "name": name, "options": typed_options})
    except ValidationError as err:
        raise GengapError(f"data source {name!r}: {first_problem(err)}") from None


def _typed_options(name: str, model: type[BaseModel], given: dict[str, str]) -> dict[str, Any]:
    """Options converted to their declared types, so the spec holds 3, not "3"."""
    try:
        validated = model.model_validate(given)
    except ValidationError as err:
        raise GengapError(f"data source {name!r}: option {first_problem(err)}") from None
    return {key: getattr(validated, key) for key in given}


@data_app.command(
    "show", context_settings={"allow_extra_args": True, "ignore_unknown_options": True}
)
def data_show(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="data source (see `gengap data list`)")],
    data_dir: DataDir = None,
) -> None:
    """Build a data set and print its sizes, class balance and majority-class accuracy.

    Knobs follow the name: --label-noise 0.2 --train-size 500 --window 3 --aggregation min.
    """
    from gengap.data import load, summarize

    spec = spec_from_knobs(name, parse_knobs(list(ctx.args)))
    s = summarize(load(spec, data_dir))
    changed = spec.model_dump(exclude_defaults=True, exclude={"name"})
    knobs = ", ".join(f"{k}={v}" for k, v in changed.items()) or "defaults"
    console.print(f"[bold]{escape(name)}[/bold] ({escape(knobs)})", highlight=False, markup=True)
    vocab = f", vocabulary {s.vocab_size}" if s.vocab_size is not None else ""
    console.print(
        f"{s.n_train} training and {s.n_test} test examples; inputs {s.kind} of shape "
        f"{s.input_shape} ({s.dtype}{vocab}); {s.num_classes} classes", highlight=False,
    )
    balance = pd.DataFrame({
        "class": range(s.num_classes),
        "train": s.train_counts,
        "train share": [c / max(s.n_train, 1) for c in s.train_counts],
        "test": s.test_counts,
        "test share": [c / max(s.n_test, 1) for c in s.test_counts],
    })
    if s.num_classes > 20:  # one row per class would flood the terminal
        balance = balance.describe().loc[["min", "mean", "max"]].drop(columns="class")
        balance.insert(0, "class counts", balance.index)
    console.print(frame_table(balance, title="class balance"))
    if unseen := s.test_only_classes:
        shown = ", ".join(map(str, unseen[:10])) + (" …" if len(unseen) > 10 else "")
        console.print(f"note: {len(unseen)} class{'es' if len(unseen) > 1 else ''} of the test "
                      f"split never occur{'s' if len(unseen) == 1 else ''} in training "
                      f"({shown}): no network trained on it can learn "
                      f"{'them' if len(unseen) > 1 else 'it'}", highlight=False)
    console.print(
        f"majority-class accuracy (chance baseline): always predicting class "
        f"{s.majority_class} scores {s.majority_train_acc:.4f} on train, "
        f"{s.majority_test_acc:.4f} on test", highlight=False,
    )
