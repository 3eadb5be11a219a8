"""Reading a PGDL task's ``model_configs.json`` (the scorer's reference data) as the scorer
does, without torch: a table of models with their hyperparameter values kept as the original
JSON values (the scorer keys its bins by ``str(value)``), and the possible values of each
hyperparameter taken from the first model.

Format (one entry per model; key ``"0"`` is ``model_0``)::

    {"0": {"hparams": {"num_units": {"possible_values": [64, 128], "current_value": 64}, ...},
           "metrics": {"train_acc": 0.875, "test_acc": 0.9}}, ...}
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from gengap.errors import GengapError

CONFIGS_NAME = "model_configs.json"


@dataclass(frozen=True)
class Reference:
    """One task's reference data.

    ``frame``: one row per model, indexed by model id (``model_<key>``), with one column per
    hyperparameter (object dtype, the JSON values), ``train_acc``, ``test_acc`` and ``gap``
    (train minus test accuracy). ``hyperparameters``: names in the first model's order.
    ``levels``: each hyperparameter's ``possible_values`` from the first model.
    """

    path: Path
    frame: pd.DataFrame
    hyperparameters: list[str]
    levels: dict[str, list[Any]]


def model_id(key: str) -> str:
    """The scorer's id for a key: prefixed with ``model_`` unless it contains ``model``."""
    return key if "model" in key else f"model_{key}"


def read_json(path: Path, missing: str = "no such file") -> Any:
    """A JSON file's content; a one-line error (``missing`` when it is absent, or a key that
    an object repeats: Python's json would keep its last value unseen) otherwise."""
    try:
        return json.loads(path.read_text(), object_pairs_hook=_once_each)
    except FileNotFoundError:
        raise GengapError(f"{path}: {missing}") from None
    except OSError as err:
        raise GengapError(f"{path}: cannot read: {err.strerror or err}") from None
    except RepeatedKey as err:
        raise GengapError(f"{path}: key {str(err)!r} appears twice in one object") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise GengapError(f"{path}: not valid JSON ({err})") from None


class RepeatedKey(ValueError):
    """A JSON object that names a key twice."""


def _once_each(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise RepeatedKey(key)
        out[key] = value
    return out


def accuracy(value: Any, where: str, name: str) -> float:
    """A reference accuracy (``train_acc``, ``test_acc``): a JSON number in [0, 1]. True, NaN,
    a string or a percentage such as 97.0 is a one-line error naming ``where``: the gap and a
    zoo's metrics are differences of fractions."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise GengapError(f"{where}: metrics.{name} is {json.dumps(value)}, not an accuracy "
                          "(a number in [0, 1])")
    return float(value)


def scalar(value: Any) -> bool | int | float | str:
    """A hyperparameter value as a zoo option can hold it: lists, objects and null as their
    JSON text (a layer-width list such as [128, 128], say)."""
    if isinstance(value, bool | int | float | str):
        return value
    return json.dumps(value, sort_keys=True)


def same_value(a: Any, b: Any) -> bool:
    """Equal hyperparameter values, 256 and 256.0 alike (the public data mixed the two)."""
    a, b = scalar(a), scalar(b)
    if isinstance(a, bool) != isinstance(b, bool):  # JSON's true is not 1
        return False
    if isinstance(a, int | float) and isinstance(b, int | float):
        return float(a) == float(b)
    return a == b


def _as_listed(value: Any, possible: list[Any]) -> Any:
    """``value`` as its ``possible_values`` entry writes it (2 for 2.0). The scorer keys its
    bins by each value's text, so a value equal to a possible one but written otherwise falls
    in no bin and every pair with it is skipped: the kit's organizers fixed exactly that for
    the public data's ``convwidth`` by casting it to int. Other values are left as they are
    (the grid check names them)."""
    text = str(value)
    if any(str(p) == text for p in possible):
        return value
    return next((p for p in possible if same_value(p, value)), value)


def read_reference(path: str | Path) -> Reference:
    """Read ``model_configs.json`` (or a folder holding it) into a :class:`Reference`."""
    path = Path(path)
    if path.is_dir():
        path = path / CONFIGS_NAME
    data = read_json(path)
    if not isinstance(data, dict) or not data:
        raise GengapError(f"{path}: expected a non-empty object of models")
    first = next(iter(data.values()))
    hparams = first.get("hparams") if isinstance(first, dict) else None
    if not isinstance(hparams, dict) or not all(
            isinstance(h, dict) and isinstance(h.get("possible_values"), list)
            for h in hparams.values()):
        raise GengapError(f"{path}: first model: 'hparams' must map each hyperparameter to an "
                          "object with a 'possible_values' list")
    names = list(hparams)
    levels = {h: list(hparams[h]["possible_values"]) for h in names}
    for h, values in levels.items():  # else one grid cell of the two is empty, unexplained
        texts = [str(v) for v in values]  # the scorer's bins are keyed by the text
        repeated = [v for v, t in zip(values, texts, strict=True) if texts.count(t) > 1]
        if repeated:
            raise GengapError(f"{path}: first model: possible_values of {h} names "
                              f"{repeated[0]!r} twice")
    rows, index = [], []
    for key, entry in data.items():
        where = f"{path}: model {key!r}"
        hparams, metrics = (entry.get("hparams"), entry.get("metrics")) \
            if isinstance(entry, dict) else (None, None)
        if not isinstance(hparams, dict) or not isinstance(metrics, dict):
            raise GengapError(f"{where}: expected an object with objects 'hparams' and 'metrics'")
        for h in names:
            if not isinstance(hparams.get(h), dict) or "current_value" not in hparams[h]:
                raise GengapError(f"{where}: no hparams.{h}.current_value")
        row: dict[str, Any] = {h: hparams[h]["current_value"] for h in names}
        for h in names:
            row[h] = _as_listed(row[h], levels[h])
        for name in ("train_acc", "test_acc"):
            if name not in metrics:
                raise GengapError(f"{where}: no metrics.{name}")
            row[name] = accuracy(metrics[name], where, name)
        rows.append(row)
        index.append(model_id(str(key)))
    frame = pd.DataFrame(rows, index=pd.Index(index, name="model_id"))
    for h in names:
        frame[h] = pd.Series([r[h] for r in rows], index=frame.index, dtype=object)
    frame["gap"] = frame["train_acc"] - frame["test_acc"]
    if frame.index.has_duplicates:
        raise GengapError(f"{path}: model ids repeat after adding the model_ prefix")
    return Reference(path, frame, names, levels)
