"""A PGDL task folder: its models, their weights, the training data and (when present) the
reference hyperparameters and accuracies.

Layout (see the README)::

    <task>/model_<id>/config.json, weights.hdf5, weights_init.hdf5
    <task>/dataset_1/train/shard_*.tfrecord   (and dataset_1/test/, when shipped)
    <task>/model_configs.json                 or <phase>/reference_data/<task>/model_configs.json
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import torch

from gengap.data.splits import plain_strides
from gengap.errors import GengapError
from gengap.interop.pgdl.keras import (
    KerasSequential,
    build_keras,
    keras_state_dict,
    read_keras_weights,
    torch_input_shape,
)
from gengap.interop.pgdl.reference import (
    CONFIGS_NAME,
    accuracy,
    model_id,
    read_json,
    same_value,
)
from gengap.interop.pgdl.tfrecord import read_shards


@dataclass(frozen=True)
class ModelRecord:
    """One model's entry of ``model_configs.json``: hyperparameter values, their possible
    values, and the train/test accuracy."""

    hparams: dict[str, Any]
    possible: dict[str, list[Any]]
    metrics: dict[str, float]


def read_model_configs(path: Path) -> dict[str, ModelRecord]:
    """``model_configs.json`` by model id (key ``"0"`` is ``model_0``: :func:`model_id`, the
    scorer's rule)."""
    data = read_json(path)
    if not isinstance(data, dict):
        raise GengapError(f"{path}: expected an object of models")
    out = {}
    for key, entry in data.items():
        where = f"{path}: model {key!r}"
        if not isinstance(entry, dict) or not all(
            isinstance(entry.get(part), dict) for part in ("hparams", "metrics")
        ):
            raise GengapError(f"{where}: expected an object with objects 'hparams' and 'metrics'")
        hparams, possible = {}, {}
        for name, h in entry["hparams"].items():
            if not isinstance(h, dict) or "current_value" not in h:
                raise GengapError(f"{where}: hyperparameter {name!r} has no 'current_value'")
            values = h.get("possible_values", [])
            if not isinstance(values, list):
                raise GengapError(f"{where}: hyperparameter {name!r}: 'possible_values' must "
                                  f"be a list, got {values!r}")
            hparams[name], possible[name] = h["current_value"], values
        metrics = {}
        for name, value in entry["metrics"].items():
            if name in ("train_acc", "test_acc"):
                metrics[name] = accuracy(value, where, name)
                continue
            try:  # another metric is kept as a number where it reads as one ("0.3" too)
                metrics[name] = float(value)
            except (TypeError, ValueError):
                raise GengapError(f"{where}: metrics.{name} is {json.dumps(value)}, not a "
                                  "number") from None
        named = model_id(str(key))
        if named in out:  # "0" and "model_0": one model to the scorer
            raise GengapError(f"{where}: its id {named} repeats (the scorer adds model_ to "
                              "keys without 'model')")
        out[named] = ModelRecord(hparams, possible, metrics)
    return out


def shard_paths(folder: Path) -> list[Path]:
    """``shard_*.tfrecord`` files of ``folder`` in numeric order (shard_2 before shard_10):
    a fixed order, where PGDL's ingestion used an unordered glob."""
    def key(path: Path) -> tuple[int, str]:
        found = re.search(r"(\d+)", path.stem)
        return (int(found.group(1)) if found else -1, path.name)

    return sorted(folder.glob("*.tfrecord"), key=key)


def outside_task_folders(path: str | Path) -> None:
    """Raise a one-line :class:`GengapError` where ``path`` is, or lies in, a PGDL task
    folder (one holding ``model_configs.json`` or ``dataset_1/``): a folder written there
    reads as one more model."""
    target = Path(path).resolve()
    for folder in (target, *target.parents):
        if (folder / "model_configs.json").is_file() or (folder / "dataset_1").is_dir():
            where = "is" if folder == target else "is inside"
            raise GengapError(f"{path}: {where} the PGDL task folder {folder}, where a new "
                              "folder reads as one more model of the task; write elsewhere")


class PgdlTask:
    """A PGDL task folder, read lazily: models are built on demand, data read once.

    Args:
        root: the task folder (holds ``model_*/`` and ``dataset_1/``).
        configs: ``model_configs.json`` or a folder holding it (``reference_data/<task>``);
            by default the task folder's own, else ``../../reference_data/<task>/``.
    """

    def __init__(self, root: str | Path, configs: str | Path | None = None) -> None:
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise GengapError(f"{self.root}: no such task folder")
        self.name = self.root.name
        self.model_ids = sorted(
            p.name for p in self.root.iterdir() if p.is_dir() and p.name.startswith("model")
        )  # PGDL's DataManager order: sorted names
        if not self.model_ids:
            raise GengapError(f"{self.root}: not a PGDL task folder (no model_* folders)")
        self.configs_path = self._find_configs(configs)

    def _find_configs(self, configs: str | Path | None) -> Path | None:
        if configs is not None:
            path = Path(configs).resolve()
            for candidate in (path, path / CONFIGS_NAME, path / self.name / CONFIGS_NAME):
                if candidate.is_file():
                    return candidate
            raise GengapError(f"{path}: no {CONFIGS_NAME} for task {self.name!r} there")
        for candidate in (
            self.root / CONFIGS_NAME,
            self.root.parent.parent / "reference_data" / self.name / CONFIGS_NAME,
        ):
            if candidate.is_file():
                return candidate
        return None

    # -- reference data --------------------------------------------------------------------

    @cached_property
    def records(self) -> dict[str, ModelRecord] | None:
        """The reference hyperparameters and accuracies by model id, or None without them."""
        if self.configs_path is None:
            return None
        records = read_model_configs(self.configs_path)
        missing = [m for m in self.model_ids if m not in records]
        if missing:
            raise GengapError(f"{self.configs_path}: has no entry for {missing[0]}")
        return records

    def find_model(self, hparams: dict[str, Any]) -> str:
        """The id of the one model whose reference hyperparameters equal ``hparams``."""
        if self.records is None:
            raise GengapError(f"{self.root}: no {CONFIGS_NAME} to find a model by hyperparameters")
        found = [
            model_id for model_id in self.model_ids
            if all(same_value(self.records[model_id].hparams.get(name), value)
                   for name, value in hparams.items())
        ]
        if len(found) != 1:
            what = "no model" if not found else f"{len(found)} models"
            raise GengapError(f"{self.configs_path}: {what} with hyperparameters {hparams}")
        return found[0]

    # -- models ----------------------------------------------------------------------------

    def config(self, model_id: str) -> dict[str, Any]:
        return read_json(self._model_dir(model_id) / "config.json")

    def _model_dir(self, model_id: str) -> Path:
        folder = self.root / model_id
        if model_id not in self.model_ids:
            raise GengapError(f"{self.root}: no model {model_id!r}")
        return folder

    def build(self, model_id: str) -> KerasSequential:
        """The model's torch module, untrained."""
        return build_keras(self.config(model_id), self._model_dir(model_id) / "config.json")

    def state(self, model_id: str, which: str = "final") -> dict[str, torch.Tensor] | None:
        """The torch state dict of ``weights.hdf5`` (``final``) or ``weights_init.hdf5``
        (``init``; None when the task ships no initial weights)."""
        loaded = self._load(model_id, which)
        return None if loaded is None else loaded[1]

    def model(self, model_id: str, which: str = "final") -> KerasSequential | None:
        """The model with its trained (``final``) or initial (``init``) weights, in eval mode;
        None for ``init`` when the task has no ``weights_init.hdf5``."""
        loaded = self._load(model_id, which)
        if loaded is None:
            return None
        net, state = loaded
        net.load_state_dict(state)
        return net.eval()

    def _load(
        self, model_id: str, which: str
    ) -> tuple[KerasSequential, dict[str, torch.Tensor]] | None:
        if which not in ("final", "init"):
            raise ValueError(f"which must be 'final' or 'init', not {which!r}")
        folder = self._model_dir(model_id)
        path = folder / ("weights.hdf5" if which == "final" else "weights_init.hdf5")
        if which == "init" and not path.is_file():
            return None
        net = self.build(model_id)
        return net, keras_state_dict(net, read_keras_weights(path), path)

    # -- data ------------------------------------------------------------------------------

    def _split(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        folder = self.root / "dataset_1" / split
        paths = shard_paths(folder) if folder.is_dir() else []
        if not paths:
            if split == "train":
                raise GengapError(f"{folder}: no shard_*.tfrecord files")
            return torch.zeros((0,)), torch.zeros((0,), dtype=torch.int64)
        x, y = read_shards(paths)
        if x.ndim == 4:  # (N, H, W, C) -> gengap's (N, C, H, W)
            x = x.transpose(0, 3, 1, 2)
        return plain_strides(torch.from_numpy(x)), torch.from_numpy(y)

    @cached_property
    def train_data(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The training inputs (images (N, C, H, W), float32) and labels (int64), shards in
        numeric order, records in file order."""
        return self._split("train")

    @cached_property
    def test_data(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The test split when the task ships one (the toy data does), else empty tensors."""
        return self._split("test")

    def input_shape(self, model_id: str) -> tuple[int, ...]:
        """One input's shape in gengap's layout, from the model's config."""
        shape = self.config(model_id).get("input_shape") or []
        return torch_input_shape(tuple(int(v) for v in shape))


def load_task(root: str | Path, configs: str | Path | None = None) -> PgdlTask:
    """Open a PGDL task folder (see :class:`PgdlTask`)."""
    return PgdlTask(root, configs)
