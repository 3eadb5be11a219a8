"""The Small CNN Zoo of Unterthiner et al. 2020 ("Predicting Neural Network Accuracy from
Weights"): ``weights.npy``, ``layout.csv`` and ``metrics.csv.gz`` in one folder, imported into a
gengap zoo.

* ``weights.npy``: one row per checkpoint, every parameter flattened; read with
  ``allow_pickle=False`` and memory-mapped (the real files are gigabytes).
* ``layout.csv``: ``start_idx, end_idx, shape, varname`` per tensor; within each layer the bias
  comes before the kernel; kernels are in TensorFlow layout (kh, kw, c_in, c_out), dense
  kernels (in, out).
* ``metrics.csv.gz``: one row per checkpoint, aligned with ``weights.npy``: ``modeldir``,
  ``step``, ``train_accuracy``, ``test_accuracy``, ``train_loss``, ``test_loss`` and the
  hyperparameters as ``config.<name>``.

The network is the zoo's ``build_cnn``: ``Conv2D(3x3, stride 2, 'valid', activation)`` layers
(Dropout after each when ``config.dropout`` > 0), ``GlobalAveragePooling2D``, ``Dense``; the
layer sizes come from ``layout.csv``. Each imported run gets its last checkpoint as ``final``
and its step-0 checkpoint (when the file has it) as ``init``.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from pydantic import Field
from torch import nn

from gengap.data.sources import RawSplits, SourceOptions, register_source
from gengap.data.splits import load_raw
from gengap.errors import GengapError
from gengap.interop.pgdl.keras import (
    KerasSequential,
    build_keras,
    keras_state_dict,
    unsupported_activation,
)
from gengap.models.families import register_family
from gengap.models.weight_check import weight_problem
from gengap.specs import ArchSpec, DataSpec, ZooSpec
from gengap.zoo.store import Store

STRIDE = 2  # train_network.py's --cnn_stride default, used for the published zoo
INPUTS = {  # config.dataset -> (gengap data source, input side)
    "mnist": ("mnist", 28),
    "fashion_mnist": ("fashion-mnist", 28),
    "cifar10": ("cifar10", 32),
    "svhn_cropped": ("svhn", 32),
}
METRIC_COLUMNS = {"train_accuracy": "train_acc", "test_accuracy": "test_acc",
                  "train_loss": "train_loss", "test_loss": "test_loss"}  # -> gengap's names
HPARAMS = ("activation", "dropout", "l2reg", "learning_rate", "optimizer", "w_init",
           "init_std", "train_fraction", "b_init")


@dataclass(frozen=True)
class Tensor:
    """One row of ``layout.csv``."""

    start: int
    end: int
    shape: tuple[int, ...]
    varname: str


@dataclass
class CnnZoo:
    """A Small CNN Zoo folder: the weight matrix (memory-mapped), layout and metrics."""

    folder: Path
    weights: np.ndarray
    layout: list[Tensor]
    metrics: pd.DataFrame

    def layers(self) -> list[dict[str, Tensor]]:
        """The tensors grouped per layer, ``{"bias": ..., "kernel": ...}``, in file order."""
        out: list[dict[str, Tensor]] = []
        rows: list[int] = []  # each layer's first layout row, for the messages
        for row, tensor in enumerate(self.layout):
            kind = tensor.varname.rsplit("/", 1)[-1].split(":", 1)[0]
            if kind not in ("bias", "kernel"):
                raise GengapError(
                    f"{self.folder / 'layout.csv'}: tensor {tensor.varname!r} is neither a "
                    "kernel nor a bias (only the plain cnn architecture is supported)"
                )
            if not out or kind in out[-1]:
                out.append({})
                rows.append(row)
            out[-1][kind] = tensor
        for layer, row in zip(out, rows, strict=True):
            if "kernel" not in layer:
                raise GengapError(f"{self.folder / 'layout.csv'}: row {row} "
                                  f"({layer['bias'].varname}) is a bias without its kernel")
        return out

    def keras_config(self, row: int) -> dict[str, Any]:
        """The Keras config of checkpoint ``row``'s network (``build_cnn`` of the zoo)."""
        activation, dropout = self.setting(row)
        dataset = str(self.metrics.iloc[row].get("config.dataset", "mnist"))
        side = INPUTS.get(dataset, ("", 28))[1]
        layers: list[dict[str, Any]] = []
        seen_dense = False
        for i, layer in enumerate(self.layers()):
            kernel = layer["kernel"].shape
            if len(kernel) == 4:
                if seen_dense:
                    raise GengapError(f"{self.folder / 'layout.csv'}: a conv after a dense layer")
                layers.append({"layer_name": "Conv2D", "filters": kernel[3],
                               "kernel_size": list(kernel[:2]), "strides": STRIDE,
                               "activation": activation, "use_bias": "bias" in layer})
                if dropout > 0:
                    layers.append({"layer_name": "Dropout", "rate": dropout})
            elif len(kernel) == 2:
                if not seen_dense and layers:
                    layers.append({"layer_name": "GlobalAveragePooling2D"})
                seen_dense = True
                last = i == len(self.layers()) - 1
                layers.append({"layer_name": "Dense", "units": kernel[1],
                               "activation": None if last else activation,
                               "use_bias": "bias" in layer})
            else:
                raise GengapError(
                    f"{self.folder / 'layout.csv'}: kernel of shape {kernel} is neither conv "
                    "nor dense"
                )
        first = self.layers()[0]["kernel"].shape
        input_shape = [side, side, first[2]] if len(first) == 4 else [first[0]]
        return {"model_config": layers, "input_shape": input_shape}

    def setting(self, row: int) -> tuple[str, float]:
        """Checkpoint ``row``'s activation and dropout rate, checked here so that a bad value
        is blamed on ``metrics.csv.gz`` (the network's errors otherwise name ``layout.csv``)."""
        record = self.metrics.iloc[row]
        where = f"{self.folder / 'metrics.csv.gz'}: row {row}"
        activation = record.get("config.activation", "relu")
        if (problem := unsupported_activation(activation, _shown(activation))) is not None:
            raise GengapError(f"{where}: config.activation {problem}")
        dropout = record.get("config.dropout", 0.0)
        try:
            rate = 0.0 if pd.isna(dropout) else float(dropout)  # empty: no dropout
        except (TypeError, ValueError):
            rate = math.nan
        if not 0.0 <= rate < 1.0:
            raise GengapError(f"{where}: config.dropout {_shown(dropout)} is not a dropout rate "
                              "in [0, 1)")
        return str(activation), rate

    def state(self, row: int, net: KerasSequential) -> dict[str, torch.Tensor]:
        """The torch state dict of checkpoint ``row`` for ``net``."""
        flat = np.asarray(self.weights[row], dtype=np.float32)
        weights = []
        for i, layer in enumerate(self.layers()):
            arrays = {kind: flat[t.start : t.end].reshape(t.shape) for kind, t in layer.items()}
            weights.append((f"layer_{i}", arrays))
        return keras_state_dict(net, weights, self.folder / "weights.npy")


def _shown(value: Any) -> str:
    """A table cell as a message shows it: text quoted, numbers plain, NaN as empty."""
    if isinstance(value, str):
        return repr(value)
    return "empty" if pd.isna(value) else str(value)


def _shape(text: str, path: Path, line: int) -> tuple[int, ...]:
    numbers = re.findall(r"\d+", str(text))  # "(3, 3, 1, 16)": never eval a file's text
    if not numbers:
        raise GengapError(f"{path}: row {line}: shape {text!r} is not a tuple of sizes")
    return tuple(int(n) for n in numbers)


def _read_csv(path: Path, **options: Any) -> pd.DataFrame:
    try:
        return pd.read_csv(path, **options)
    except (ValueError, OSError, EOFError, zlib.error, pd.errors.ParserError) as err:
        raise GengapError(f"{path}: not a readable CSV table ({err})") from None


def read_cnnzoo(folder: str | Path) -> CnnZoo:
    """Open a Small CNN Zoo folder, checking that its three files agree."""
    folder = Path(folder).resolve()
    paths = {name: folder / name for name in ("weights.npy", "layout.csv", "metrics.csv.gz")}
    for path in paths.values():
        if not path.is_file():
            raise GengapError(f"{path}: not found (a Small CNN Zoo folder holds weights.npy, "
                              "layout.csv and metrics.csv.gz)")
    if zipfile.is_zipfile(paths["weights.npy"]):
        raise GengapError(f"{paths['weights.npy']}: an .npz archive, expected a .npy array")
    with paths["weights.npy"].open("rb") as head:
        if head.read(6) != b"\x93NUMPY":  # numpy would take any other file for a pickle
            raise GengapError(f"{paths['weights.npy']}: not a .npy file (no NumPy header)")
    try:
        weights = np.load(paths["weights.npy"], mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise GengapError(f"{paths['weights.npy']}: not a readable .npy array ({err})") from None
    if weights.ndim != 2 or weights.dtype.kind != "f":
        raise GengapError(f"{paths['weights.npy']}: expected a 2-d float array, got "
                          f"{weights.dtype} of shape {weights.shape}")
    table = _read_csv(paths["layout.csv"])
    metrics = _read_csv(paths["metrics.csv.gz"], compression="gzip")
    need = {"start_idx", "end_idx", "shape", "varname"}
    if not need <= set(table.columns):
        raise GengapError(f"{paths['layout.csv']}: needs columns {', '.join(sorted(need))}")
    bounds = table[["start_idx", "end_idx"]].apply(pd.to_numeric, errors="coerce")
    bad = bounds.isna().any(axis=1) | (bounds < 0).any(axis=1) | (bounds % 1 != 0).any(axis=1)
    if bad.any():
        row = int(bad.to_numpy().argmax())
        raise GengapError(f"{paths['layout.csv']}: row {row} needs whole, non-negative start_idx "
                          f"and end_idx, got {_shown(table['start_idx'].iloc[row])} and "
                          f"{_shown(table['end_idx'].iloc[row])}")
    layout = [
        Tensor(int(start), int(end), _shape(r.shape, paths["layout.csv"], i), str(r.varname))
        for i, (r, start, end) in enumerate(zip(table.itertuples(index=False),
                                                bounds["start_idx"], bounds["end_idx"],
                                                strict=True))
    ]
    if not layout:
        raise GengapError(f"{paths['layout.csv']}: no tensors")
    for i, t in enumerate(layout):
        if t.end - t.start != int(np.prod(t.shape)):
            raise GengapError(f"{paths['layout.csv']}: row {i} ({t.varname}) spans "
                              f"[{t.start}, {t.end}), which does not fit shape {t.shape}")
    spans = sorted((t.start, t.end, i) for i, t in enumerate(layout))
    for (_, end, i), (start, _, j) in itertools.pairwise(spans):
        if start < end:  # two tensors reading the same weights: a wrong network
            raise GengapError(f"{paths['layout.csv']}: rows {i} and {j} ({layout[i].varname}, "
                              f"{layout[j].varname}) overlap")
    described = sum(t.end - t.start for t in layout)
    last = max(t.end for t in layout)
    if weights.shape[1] != described or last != described:
        # columns no tensor reads, or tensors past the last column: another network's files
        raise GengapError(f"{paths['weights.npy']}: {weights.shape[1]} columns, where "
                          f"layout.csv describes {described} weights from column 0 to "
                          f"{last}")
    if len(metrics) != len(weights):
        raise GengapError(f"{paths['metrics.csv.gz']}: {len(metrics)} rows, weights.npy has "
                          f"{len(weights)}")
    missing = {"modeldir", "step", "train_accuracy", "test_accuracy"} - set(metrics.columns)
    if missing:
        raise GengapError(f"{paths['metrics.csv.gz']}: missing column {sorted(missing)[0]!r}")
    if not len(metrics):
        raise GengapError(f"{paths['metrics.csv.gz']}: no checkpoints")
    steps = pd.to_numeric(metrics["step"], errors="coerce")
    if steps.isna().any() or metrics["modeldir"].isna().any():
        row = int((steps.isna() | metrics["modeldir"].isna()).to_numpy().argmax())
        raise GengapError(f"{paths['metrics.csv.gz']}: row {row} has no modeldir or no integer "
                          f"step ({metrics['step'].iloc[row]!r})")
    metrics = metrics.assign(step=steps.astype(np.int64))
    twice = metrics.duplicated(["modeldir", "step"], keep="first")
    if twice.any():  # which checkpoint is the run's final (or initial) one is then a guess
        row = int(twice.to_numpy().argmax())
        raise GengapError(f"{paths['metrics.csv.gz']}: row {row} repeats modeldir "
                          f"{metrics['modeldir'].iloc[row]!r} at step "
                          f"{int(metrics['step'].iloc[row])}")
    for column in METRIC_COLUMNS:
        if column not in metrics.columns:
            continue
        values = pd.to_numeric(metrics[column], errors="coerce")
        bad = values.isna() & metrics[column].notna()  # present, but not a number
        if column.endswith("accuracy"):
            bad |= (values < 0) | (values > 1)
        if bad.any():
            row = int(bad.to_numpy().argmax())
            raise GengapError(f"{paths['metrics.csv.gz']}: row {row} has {column} "
                              f"{_shown(metrics[column].iloc[row])}, expected a number"
                              + (" within [0, 1]" if column.endswith("accuracy") else ""))
        metrics = metrics.assign(**{column: values})
    if "config.dataset" in metrics.columns:
        unknown = sorted(set(metrics["config.dataset"].dropna().astype(str)) - set(INPUTS))
        if unknown:
            raise GengapError(f"{paths['metrics.csv.gz']}: unknown config.dataset "
                              f"{unknown[0]!r} (known: {', '.join(INPUTS)})")
    return CnnZoo(folder, weights, layout, metrics)


@lru_cache(maxsize=4)
def _cached(folder: str) -> CnnZoo:
    return read_cnnzoo(folder)


def final_rows(zoo: CnnZoo) -> list[tuple[int, int | None]]:
    """``(final row, init row or None)`` per run (``modeldir``), in file order; final = the
    run's largest step, init = its step 0 (None also for a run whose only checkpoint is its
    step 0: see :func:`unusable`)."""
    out = []
    for _, group in zoo.metrics.groupby("modeldir", sort=False):
        final = int(group["step"].idxmax())
        zero = group.index[group["step"] == 0]
        init = int(zero[0]) if len(zero) and int(zero[0]) != final else None
        out.append((final, init))
    return out


@register_family("smallcnn", knobs=())  # options only
def build_smallcnn(
    spec: ArchSpec, input_shape: tuple[int, ...], num_classes: int, vocab_size: int | None = None
) -> nn.Module:
    """A Small CNN Zoo network (options: ``folder`` and the weights ``row``)."""
    if "folder" not in spec.options or "row" not in spec.options:
        raise GengapError("architecture 'smallcnn' needs options folder and row")
    zoo = _cached(str(spec.options["folder"]))
    return build_keras(zoo.keras_config(int(spec.options["row"])), zoo.folder / "layout.csv")


class CnnZooDataOptions(SourceOptions):
    dataset: str = Field(description="the zoo's config.dataset: mnist, fashion_mnist, cifar10 "
                         "or svhn_cropped")


@register_source(
    "cnnzoo", "a Small CNN Zoo data set as its networks saw it: grayscale, pixels in [-1, 1]",
    options=CnnZooDataOptions, needs_files=True,
)
def make_cnnzoo(spec: DataSpec, options: CnnZooDataOptions, data_dir: Path | None) -> RawSplits:
    if options.dataset not in INPUTS:
        raise GengapError(f"data source 'cnnzoo': unknown dataset {options.dataset!r} "
                          f"(known: {', '.join(INPUTS)})")
    raw = load_raw(DataSpec(name=INPUTS[options.dataset][0]), data_dir)

    def prepare(x: np.ndarray) -> np.ndarray:  # train_network.py: [-1, 1], then channel mean
        return (x * 2.0 - 1.0).mean(axis=1, keepdims=True).astype(np.float32)

    return RawSplits(prepare(raw.x_train), raw.y_train, prepare(raw.x_test), raw.y_test,
                     num_classes=raw.num_classes)


def cnnzoo_spec(zoo: CnnZoo, rows: list[int]) -> ZooSpec:
    """The gengap zoo spec: one run per imported network, axis ``arch.options.row``."""
    datasets = {str(zoo.metrics.iloc[r].get("config.dataset", "mnist")) for r in rows}
    if len(datasets) > 1:
        raise GengapError(f"{zoo.folder}: networks of several datasets ({sorted(datasets)}); "
                          "import one dataset's folder at a time")
    dataset = datasets.pop()
    return ZooSpec(
        name=f"cnnzoo-{dataset}",
        data=DataSpec(name="cnnzoo", options={"dataset": dataset}, normalize=False),
        arch=ArchSpec(family="smallcnn", options={"folder": str(zoo.folder)}),
        axes={"arch.options.row": tuple(rows)},
    )


def import_cnnzoo(
    folder: str | Path, out: str | Path, limit: int | None = None,
    on_run: Callable[[int], None] | None = None,
) -> Store:
    """Import a Small CNN Zoo folder into the zoo folder ``out``: one ``done`` run per network
    (its last checkpoint, and step 0 as ``init``), its accuracies and losses as metrics and its
    hyperparameters as ``hp.<name>`` columns. ``limit`` keeps the first N networks; a later
    import of the same folder with a larger limit (or none) adds the others to ``out``. A network
    whose final weights are not finite, that has only its step-0 checkpoint or whose last
    checkpoint lacks an accuracy is a ``failed`` run with the reason; one whose step-0 weights
    are not finite has no ``init`` (the measures that need it are left out for it)."""
    zoo = read_cnnzoo(folder)
    pairs = final_rows(zoo)[:limit] if limit else final_rows(zoo)
    spec = cnnzoo_spec(zoo, [final for final, _ in pairs])
    # one network per distinct Keras config (activation, dropout), its layers and shapes
    # checked on one of its rows before the zoo folder is made
    networks: dict[str, KerasSequential] = {}
    for final, _ in pairs:
        config = json.dumps(zoo.keras_config(final), sort_keys=True)
        if config not in networks:
            networks[config] = build_keras(json.loads(config), zoo.folder / "layout.csv")
            zoo.state(final, networks[config])
    store = Store.create(out, spec, grow=True)  # a --limit import can be extended later
    done = {run.run_id for run in store.runs(status="done")}
    for run, (final, init) in zip(spec.runs(), pairs, strict=True):
        if run.run_id not in done:
            net = networks[json.dumps(zoo.keras_config(final), sort_keys=True)]
            state = zoo.state(final, net)
            problem = unusable(zoo, final) or weight_problem(state)
            if problem:
                store.record(run.run_id, "failed", _metrics(zoo, final), [], reason=problem)
            else:
                start = zoo.state(init, net) if init is not None else None
                if start is not None and not weight_problem(start):  # else: no initial weights
                    store.save_weights(run.run_id, "init", start)
                store.save_weights(run.run_id, "final", state)
                store.record(run.run_id, "done", _metrics(zoo, final), history=[])
        if on_run:
            on_run(final)
    return store


def unusable(zoo: CnnZoo, final: int) -> str | None:
    """Why the run whose last checkpoint is row ``final`` cannot be imported as finished, or
    None: a run that holds only its step-0 checkpoint (the published zoo lacks some checkpoints
    of crashed runs) has no trained network; one whose last checkpoint lacks an accuracy has
    no gap to be ranked by."""
    record = zoo.metrics.iloc[final]
    if int(record["step"]) == 0:
        return "only its step-0 checkpoint is in the file: the run has no trained weights"
    lacking = [c for c in ("train_accuracy", "test_accuracy") if pd.isna(record[c])]
    if lacking:
        return f"its last checkpoint (metrics row {final}) has no {lacking[0]}"
    return None


def _metrics(zoo: CnnZoo, row: int) -> dict[str, Any]:
    record = zoo.metrics.iloc[row]
    out: dict[str, Any] = {"modeldir": str(record["modeldir"]), "step": int(record["step"])}
    for column, name in METRIC_COLUMNS.items():
        if column in record.index and pd.notna(record[column]):
            out[name] = float(record[column])
    for name in HPARAMS:
        column = f"config.{name}"
        if column in record.index and pd.notna(record[column]):
            value = record[column]
            out[f"hp.{name}"] = value.item() if hasattr(value, "item") else value
    return out
