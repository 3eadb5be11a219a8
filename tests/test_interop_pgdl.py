"""PGDL task folders without TensorFlow: TFRecord framing, Keras -> torch conversion checked
against an independent numpy implementation of the Keras layers, task loading, .predict
files, scoring, import as a zoo, and one-line errors on corrupt files."""

from __future__ import annotations

import itertools
import json
import math
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from gengap.cli.app import app
from gengap.errors import GengapError
from gengap.interop.pgdl import (
    EXCEEDED,
    build_keras,
    hyperparameter_grid,
    import_task,
    load_keras,
    load_task,
    predict_task,
    write_predict,
)
from gengap.interop.pgdl.reference import read_reference
from gengap.interop.pgdl.tfrecord import (
    build_example,
    masked_crc,
    read_records,
    serialize_tensor,
    write_records,
)
from gengap.zoo import evaluate_zoo, measure_zoo

TOY = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "pgdl-toy"

# -- an independent numpy implementation of the Keras layers (channels last) ----------------


def _act(x: np.ndarray, name: str | None) -> np.ndarray:
    if name in (None, "linear"):
        return x
    return {
        "relu": lambda v: np.maximum(v, 0),
        "tanh": np.tanh,
        "sigmoid": lambda v: 1 / (1 + np.exp(-v)),
    }[name](x)


def _same(size: int, k: int, s: int) -> tuple[int, int]:
    out = -(-size // s)
    total = max((out - 1) * s + k - size, 0)
    return out, total // 2  # output size, padding before (TensorFlow's rule)


def np_conv(x, kernel, bias, stride, padding):
    n, h, w, _ = x.shape
    kh, kw, _, o = kernel.shape
    if padding == "same":
        oh, top = _same(h, kh, stride)
        ow, left = _same(w, kw, stride)
    else:
        oh, ow, top, left = (h - kh) // stride + 1, (w - kw) // stride + 1, 0, 0
    out = np.zeros((n, oh, ow, o))
    for i in range(oh):
        for j in range(ow):
            acc = np.zeros((n, o))
            for a in range(kh):  # the window cell by cell: padded cells contribute nothing
                for b in range(kw):
                    r, c = i * stride - top + a, j * stride - left + b
                    if 0 <= r < h and 0 <= c < w:
                        acc += x[:, r, c, :] @ kernel[a, b]
            out[:, i, j, :] = acc
    return out + (bias if bias is not None else 0)


def np_pool(x, size, stride, padding, op):
    n, h, w, c = x.shape
    if padding == "same":
        oh, top = _same(h, size[0], stride[0])
        ow, left = _same(w, size[1], stride[1])
    else:
        oh, ow = (h - size[0]) // stride[0] + 1, (w - size[1]) // stride[1] + 1
        top = left = 0
    out = np.zeros((n, oh, ow, c))
    for i in range(oh):
        for j in range(ow):
            r0, c0 = i * stride[0] - top, j * stride[1] - left
            window = x[:, max(r0, 0) : min(r0 + size[0], h), max(c0, 0) : min(c0 + size[1], w)]
            out[:, i, j] = op(window, axis=(1, 2))  # only the real cells, as TensorFlow does
    return out


def np_forward(config: dict, weights: list[dict[str, np.ndarray]], x: np.ndarray) -> np.ndarray:
    """Keras semantics on channels-last float64 arrays."""
    h = x.astype(np.float64)
    stack = iter(weights)
    for layer in config["model_config"]:
        kind = layer["layer_name"]
        if kind == "Conv2D":
            w = next(stack)
            h = np_conv(h, w["kernel"], w.get("bias"), layer.get("strides", 1),
                        layer.get("padding", "valid"))
            h = _act(h, layer.get("activation"))
        elif kind == "Dense":
            w = next(stack)
            h = _act(h @ w["kernel"] + w.get("bias", 0), layer.get("activation"))
        elif kind in ("MaxPooling2D", "AveragePooling2D"):
            size = layer.get("pool_size", 2)
            size = (size, size) if isinstance(size, int) else tuple(size)
            stride = layer.get("strides") or size
            stride = (stride, stride) if isinstance(stride, int) else tuple(stride)
            op = np.max if kind == "MaxPooling2D" else np.mean
            h = np_pool(h, size, stride, layer.get("padding", "valid"), op)
        elif kind == "GlobalAveragePooling2D":
            h = h.mean(axis=(1, 2))
        elif kind == "Flatten":
            h = h.reshape(len(h), -1)
        elif kind == "BatchNormalization":
            w = next(stack)
            h = (h - w["moving_mean"]) / np.sqrt(w["moving_variance"] + layer.get("epsilon", 1e-3))
            h = h * w.get("gamma", 1.0) + w.get("beta", 0.0)
        elif kind == "Activation":
            h = _act(h, layer["activation"])
        elif kind == "ReLU":
            t, slope, top = layer.get("threshold", 0), layer.get("negative_slope", 0), \
                layer.get("max_value")
            h = np.where(h >= t, h, slope * (h - t))
            h = h if top is None else np.minimum(h, top)
        elif kind == "LeakyReLU":
            h = np.where(h >= 0, h, layer.get("alpha", 0.3) * h)
        elif kind == "Dropout":
            pass
        else:
            raise AssertionError(kind)
    return h


# -- writing Keras HDF5 weights and PGDL tasks ---------------------------------------------


def write_keras_h5(path: Path, config: dict, weights: list[dict[str, np.ndarray]]) -> None:
    """``model.save_weights`` layout: root attr layer_names (every layer, weightless ones with
    empty weight_names), a group per layer, datasets at ``<layer>/<layer>/<w>:0``."""
    order = {"Conv2D": ["kernel", "bias"], "Dense": ["kernel", "bias"],
             "BatchNormalization": ["gamma", "beta", "moving_mean", "moving_variance"]}
    stack = iter(weights)
    with h5py.File(path, "w") as f:
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.4.0"
        names = [f"{layer['layer_name'].lower()}_{i}" for i, layer in
                 enumerate(config["model_config"])]
        f.attrs["layer_names"] = np.array([n.encode() for n in names])
        for name, layer in zip(names, config["model_config"], strict=True):
            group = f.create_group(name)
            if layer["layer_name"] not in order:
                group.attrs["weight_names"] = np.array([], dtype="S1")
                continue
            w = next(stack)
            keys = [k for k in order[layer["layer_name"]] if k in w]
            group.attrs["weight_names"] = np.array([f"{name}/{k}:0".encode() for k in keys])
            for k in keys:
                group.create_dataset(f"{name}/{k}:0", data=w[k])


def conv_config(input_shape, layers) -> dict:
    return {"model_config": layers, "input_shape": list(input_shape)}


MODEL_A = conv_config((8, 7, 2), [  # asymmetric 'same' padding everywhere, BN, NHWC flatten
    {"layer_name": "Conv2D", "filters": 4, "kernel_size": 3, "strides": 2, "padding": "same"},
    {"layer_name": "BatchNormalization"},
    {"layer_name": "Activation", "activation": "relu"},
    {"layer_name": "MaxPooling2D", "pool_size": 3, "strides": 2, "padding": "same"},
    {"layer_name": "Conv2D", "filters": 3, "kernel_size": [2, 3], "padding": "same",
     "activation": "tanh", "kernel_regularizer": {"class_name": "L2"}},
    {"layer_name": "AveragePooling2D", "pool_size": 2, "strides": 1, "padding": "same"},
    {"layer_name": "Dropout", "rate": 0.5},
    {"layer_name": "Flatten"},
    {"layer_name": "Dense", "units": 5.0, "activation": "relu"},  # PGDL stores some ints as floats
    {"layer_name": "Dense", "units": 3},
])
MODEL_B = conv_config((9, 9, 3), [  # valid padding, pools, ReLU knobs, GAP, BN without beta
    {"layer_name": "Conv2D", "filters": 6, "kernel_size": 3, "strides": 2, "activation": "relu"},
    {"layer_name": "BatchNormalization", "center": False, "epsilon": 0.01},
    {"layer_name": "ReLU", "negative_slope": 0.1, "max_value": 0.8},
    {"layer_name": "AveragePooling2D", "pool_size": 2, "strides": 1},
    {"layer_name": "Conv2D", "filters": 5, "kernel_size": 1, "use_bias": False},
    {"layer_name": "LeakyReLU"},
    {"layer_name": "MaxPooling2D", "pool_size": 2},
    {"layer_name": "GlobalAveragePooling2D"},
    {"layer_name": "Dense", "units": 4, "activation": "sigmoid"},
])
MODEL_C = conv_config((5,), [  # an MLP with BN on vectors
    {"layer_name": "Dense", "units": 6},
    {"layer_name": "BatchNormalization"},
    {"layer_name": "Activation", "activation": "tanh"},
    {"layer_name": "Dense", "units": 2},
])


def weights_for(config: dict, rng: np.random.Generator) -> list[dict[str, np.ndarray]]:
    net = build_keras(config)
    out = []
    for slot in net.slots:
        w = {}
        for key, shape in slot.expected.items():
            if key == "moving_variance":
                w[key] = rng.uniform(0.5, 2.0, shape)
            elif key == "gamma":
                w[key] = rng.uniform(0.5, 1.5, shape)
            else:
                w[key] = rng.normal(0, 0.5, shape)
        out.append({k: v.astype(np.float32) for k, v in w.items()})
    return out


@pytest.mark.parametrize("config", [MODEL_A, MODEL_B, MODEL_C], ids=["A", "B", "C"])
def test_converted_model_matches_numpy_keras(tmp_path: Path, config: dict) -> None:
    rng = np.random.default_rng(0)
    weights = weights_for(config, rng)
    write_keras_h5(tmp_path / "w.hdf5", config, weights)
    net = load_keras(config, tmp_path / "w.hdf5")
    x = rng.normal(0, 1, (6, *config["input_shape"])).astype(np.float32)
    expected = np_forward(config, weights, x)
    x_torch = torch.from_numpy(x.transpose(0, 3, 1, 2).copy() if x.ndim == 4 else x)
    with torch.no_grad():
        got = net(x_torch).double().numpy()
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_asymmetric_same_padding_is_not_torch_symmetric_padding(tmp_path: Path) -> None:
    """The test above would pass for a symmetric pad only if the two agreed: show they don't."""
    config = conv_config((4, 4, 1), [
        {"layer_name": "Conv2D", "filters": 1, "kernel_size": 3, "strides": 2,
         "padding": "same", "use_bias": False},
        {"layer_name": "Flatten"},
    ])
    kernel = np.arange(9, dtype=np.float32).reshape(3, 3, 1, 1)
    write_keras_h5(tmp_path / "w.hdf5", config, [{"kernel": kernel}])
    net = load_keras(config, tmp_path / "w.hdf5")
    x = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)
    got = net(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).detach().numpy()
    np.testing.assert_allclose(got[0], np_forward(config, [{"kernel": kernel}], x)[0])
    symmetric = torch.nn.functional.conv2d(
        torch.from_numpy(x.transpose(0, 3, 1, 2).copy()),
        torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy()), stride=2, padding=1,
    ).flatten().numpy()
    assert not np.allclose(got[0], symmetric)


def test_unsupported_layers_and_arguments_are_one_line_errors(tmp_path: Path) -> None:
    for layer, fragment in (
        ({"layer_name": "LSTM", "units": 3}, "layer 0 is a LSTM, which gengap cannot convert"),
        ({"layer_name": "Dense", "units": 3, "kernel_size": 2}, "argument 'kernel_size'"),
        ({"layer_name": "Dense", "units": 3, "activation": "hard_sigmoid"}, "hard_sigmoid"),
    ):
        with pytest.raises(GengapError, match=fragment) as err:
            build_keras(conv_config((4,), [layer]), tmp_path / "config.json")
        assert "\n" not in str(err.value) and "config.json" in str(err.value)


# -- TFRecord -------------------------------------------------------------------------------


def test_masked_crc_of_a_known_record() -> None:
    # The first record header of the PGDL toy data (length 0x42): its checksum is 0xaa6ef379.
    assert masked_crc((0x42).to_bytes(8, "little")) == 0xAA6EF379


def test_tfrecord_round_trip_and_corruption(tmp_path: Path) -> None:
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    record = build_example({"inputs": serialize_tensor(x),
                            "output": serialize_tensor(np.asarray(7, dtype=np.int32))})
    path = tmp_path / "shard_0.tfrecord"
    write_records(path, [record, record])
    assert list(read_records(path)) == [record, record]
    blob = bytearray(path.read_bytes())
    blob[20] ^= 0xFF  # a byte of the first record's data
    path.write_bytes(bytes(blob))
    with pytest.raises(GengapError, match="bad data checksum, record 0") as err:
        list(read_records(path))
    assert str(path) in str(err.value) and "\n" not in str(err.value)
    write_records(path, [record])
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(GengapError, match="truncated TFRecord file"):
        list(read_records(path))


# -- a synthetic task ----------------------------------------------------------------------

# filters, pool, hidden layer widths (a list-valued hyperparameter, like PGDL task 7's)
GRID = list(itertools.product([2, 4], ["max", "avg"], [[], [4]]))
GAPS = [0.05, 0.10, 0.02, 0.20, 0.07, 0.01, 0.15, 0.12]


def task_config(filters: int, pool: str, hidden: list[int]) -> dict:
    dense = [{"layer_name": "Dense", "units": h, "activation": "tanh"} for h in hidden]
    return conv_config((5, 6, 2), [
        {"layer_name": "Conv2D", "filters": filters, "kernel_size": 3, "strides": 2,
         "padding": "same", "activation": "relu"},
        {"layer_name": "MaxPooling2D" if pool == "max" else "AveragePooling2D",
         "pool_size": 2, "padding": "same"},
        {"layer_name": "Flatten"},
        *dense,
        {"layer_name": "Dense", "units": 3},
    ])


def write_task(root: Path, n: int = 12) -> dict:
    """A PGDL task folder: 8 models on a 2x2x2 grid, 3 train shards (shard_0, shard_2,
    shard_10), a test shard, model_configs.json. Returns what was written."""
    rng = np.random.default_rng(1)
    x = rng.normal(0, 1, (n, 5, 6, 2)).astype(np.float32)
    y = rng.integers(0, 3, n).astype(np.int32)
    for split, names in (("train", ["shard_10", "shard_0", "shard_2"]), ("test", ["shard_0"])):
        folder = root / "dataset_1" / split
        folder.mkdir(parents=True)
        order = ["shard_0", "shard_2", "shard_10"] if split == "train" else ["shard_0"]
        chunks = np.array_split(np.arange(n), len(order))
        for name in names:
            idx = chunks[order.index(name)]
            write_records(folder / f"{name}.tfrecord", [
                build_example({"inputs": serialize_tensor(x[i]),
                               "output": serialize_tensor(np.asarray(y[i], dtype=np.int32))})
                for i in idx
            ])
    configs, weights = {}, {}
    for k, (filters, pool, hidden) in enumerate(GRID):
        folder = root / f"model_{k}"
        folder.mkdir()
        config = task_config(filters, pool, hidden)
        (folder / "config.json").write_text(json.dumps(config))
        weights[k] = weights_for(config, rng)
        write_keras_h5(folder / "weights.hdf5", config, weights[k])
        write_keras_h5(folder / "weights_init.hdf5", config, weights_for(config, rng))
        configs[str(k)] = {
            "hparams": {
                "filters": {"possible_values": [2, 4], "current_value": float(filters)},
                "pool": {"possible_values": ["max", "avg"], "current_value": pool},
                "hidden": {"possible_values": [[], [4]], "current_value": hidden},
            },
            "metrics": {"train_acc": 0.9, "test_acc": 0.9 - GAPS[k]},
        }
    (root / "model_configs.json").write_text(json.dumps(configs))
    return {"x": x, "y": y, "weights": weights}


@pytest.fixture
def task_dir(tmp_path: Path) -> tuple[Path, dict]:
    root = tmp_path / "task9"
    root.mkdir()
    return root, write_task(root)


def test_synthetic_task_loads_in_shard_order_and_converts(task_dir) -> None:
    root, written = task_dir
    task = load_task(root)
    assert task.model_ids == [f"model_{k}" for k in range(8)]
    x, y = task.train_data
    np.testing.assert_array_equal(x.numpy(), written["x"].transpose(0, 3, 1, 2))
    np.testing.assert_array_equal(y.numpy(), written["y"])
    assert len(task.test_data[1]) == 12
    assert task.records["model_2"].metrics["test_acc"] == pytest.approx(0.9 - GAPS[2])
    for k, point in enumerate(GRID):
        net = task.model(f"model_{k}")
        with torch.no_grad():
            got = net(x).double().numpy()
        expected = np_forward(task_config(*point), written["weights"][k], written["x"])
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    assert task.model("model_0", "init") is not None


def test_predict_writes_values_that_match_numpy_and_scores(task_dir, tmp_path: Path) -> None:
    root, written = task_dir
    task = load_task(root)
    seen = []
    values = predict_task(task, "param_norm", device="cpu", on_model=seen.append)
    for k in range(8):  # Σ‖W‖_F² over kernels (no BN here, biases excluded)
        expected = sum(float((w["kernel"].astype(np.float64) ** 2).sum())
                       for w in written["weights"][k])
        assert values[f"model_{k}"] == pytest.approx(expected, rel=1e-6)
    assert [p.model_id for p in seen] == task.model_ids and all(p.seconds >= 0 for p in seen)
    path = write_predict(tmp_path / "out" / "task9.predict", values)
    assert json.loads(path.read_text()) == pytest.approx(values)
    scoring = pytest.importorskip("gengap.interop.pgdl.scoring")
    scores = scoring.score_predictions(root, path)
    assert scores.tasks[0].status == "scored" and 0.0 <= scores.tasks[0].score <= 1.0
    oracle = write_predict(tmp_path / "oracle.predict",
                           {f"model_{k}": GAPS[k] for k in range(8)})
    assert scoring.score_predictions(root, oracle).average >= scores.average
    late = predict_task(task, "param_norm", device="cpu", time_per_model=1e-9, started=0.0)
    assert set(late.values()) == {EXCEEDED}


def test_import_task_as_zoo_then_measure_and_evaluate(task_dir, tmp_path: Path) -> None:
    root, _ = task_dir
    task = load_task(root)
    assert hyperparameter_grid(task) == {"filters": [2, 4], "pool": ["max", "avg"],
                                         "hidden": ["[]", "[4]"]}
    store = import_task(task, tmp_path / "zoo")
    assert sorted(store.zoo.hyperparameters) == [
        "arch.options.filters", "arch.options.hidden", "arch.options.pool"
    ]
    frame = store.frame()
    assert list(frame["status"]) == ["done"] * 8
    by_model = frame.set_index("pgdl_model")
    for k in range(8):
        assert by_model.loc[f"model_{k}", "gap"] == pytest.approx(GAPS[k])
    assert measure_zoo(store, "param_norm", device="cpu") == 8
    predicted = predict_task(task, "param_norm", device="cpu")
    measured = store.frame().set_index("pgdl_model")["param_norm"]
    for model_id, value in predicted.items():
        assert measured[model_id] == pytest.approx(value, rel=1e-9)
    table = evaluate_zoo(store)
    assert {"tau", "psi", "psi[arch.options.pool]"} <= set(table.columns)
    again = import_task(task, tmp_path / "zoo")  # idempotent
    assert again.counts()["done"] == 8


def test_the_whole_catalogue_runs_on_converted_keras_models(task_dir, tmp_path: Path,
                                                           one_thread) -> None:
    # module_criticality once sliced the converted model, whose class cannot be rebuilt so
    store = import_task(load_task(task_dir[0]), tmp_path / "zoo")
    assert measure_zoo(store, None, device="cpu") == 8
    frame = store.frame()
    assert frame["module_criticality"].notna().all()
    assert len(store.measure_names()) > 100


def test_a_model_with_nan_weights_is_imported_failed_and_predicted_nan(task_dir, tmp_path):
    root, _ = task_dir
    def poison(name: str, obj: object) -> None:
        if isinstance(obj, h5py.Dataset) and name.endswith("kernel:0"):
            obj[...] = np.nan

    for path in (root / "model_3" / "weights.hdf5", root / "model_5" / "weights_init.hdf5"):
        with h5py.File(path, "r+") as f:
            f.visititems(poison)
    task = load_task(root)
    store = import_task(task, tmp_path / "zoo")
    frame = store.frame().set_index("pgdl_model")
    model_5 = frame.loc["model_5", "run_id"]  # its initial weights only: done, without init
    assert frame.loc["model_5", "status"] == "done"
    assert not store.weights_path(model_5, "init").exists()
    assert frame.loc["model_3", "status"] == "failed"
    assert "holds NaN or infinite values" in frame.loc["model_3", "reason"]
    assert (frame.drop("model_3")["status"] == "done").all()
    values = predict_task(task, "param_norm", device="cpu")
    assert math.isnan(values["model_3"])
    # a measure that needs the start: NaN where it diverged, the other models still predicted
    reasons = {}
    distances = predict_task(task, "frobenius_distance", device="cpu",
                             on_model=lambda m: reasons.update({m.model_id: m.why}))
    assert math.isnan(distances["model_3"]) and math.isnan(distances["model_5"])
    assert "holds NaN or infinite values" in reasons["model_3"]
    assert reasons["model_5"].startswith("initial weights: ")
    assert reasons["model_0"] == ""
    assert all(math.isfinite(v) for k, v in distances.items() if k not in ("model_3", "model_5"))
    path = write_predict(tmp_path / "task9.predict", values)  # nothing lost: NaN written
    assert math.isnan(json.loads(path.read_text())["model_3"])
    scoring = pytest.importorskip("gengap.interop.pgdl.scoring")
    assert scoring.score_predictions(root, path).tasks[0].status == "scored"


def test_incomplete_grid_imports_with_a_model_axis(task_dir, tmp_path: Path) -> None:
    root, _ = task_dir
    configs = json.loads((root / "model_configs.json").read_text())
    del configs["7"]
    (root / "model_configs.json").write_text(json.dumps(configs))
    for f in (root / "model_7").iterdir():
        f.unlink()
    (root / "model_7").rmdir()
    task = load_task(root)
    assert hyperparameter_grid(task) is None
    store = import_task(task, tmp_path / "zoo")
    assert store.zoo.hyperparameters == ["arch.options.model"]
    assert set(store.frame()["hp.pool"]) == {"max", "avg"}


def test_corrupt_files_are_one_line_errors(task_dir) -> None:
    root, _ = task_dir
    weights = root / "model_1" / "weights.hdf5"
    weights.write_bytes(weights.read_bytes()[:300])  # truncated
    with pytest.raises(GengapError, match="not a readable Keras HDF5 weights file") as err:
        load_task(root).model("model_1")
    assert str(weights) in str(err.value) and "\n" not in str(err.value)
    (root / "model_2" / "weights.hdf5").write_bytes(b"not an hdf5 file at all")
    with pytest.raises(GengapError, match="model_2"):
        load_task(root).model("model_2")
    shard = root / "dataset_1" / "train" / "shard_2.tfrecord"
    blob = bytearray(shard.read_bytes())
    blob[-1] ^= 0x01
    shard.write_bytes(bytes(blob))
    with pytest.raises(GengapError, match="shard_2.tfrecord: corrupt TFRecord file"):
        _ = load_task(root).train_data


@pytest.mark.parametrize("damage", ["truncated weights", "config not JSON"])
def test_a_bad_model_leaves_no_partial_zoo(task_dir, tmp_path: Path, damage: str) -> None:
    """Every model is read before the zoo is written: a bad sixth model used to leave a zoo of
    five done runs and the rest pending, which measure and evaluate then took as the task."""
    root, _ = task_dir
    if damage == "truncated weights":
        weights = root / "model_5" / "weights.hdf5"
        weights.write_bytes(weights.read_bytes()[:300])
    else:
        (root / "model_5" / "config.json").write_text("{not json")
    with pytest.raises(GengapError, match="model_5"):
        import_task(root, tmp_path / "zoo")
    assert not (tmp_path / "zoo").exists()


def test_mismatched_weights_name_the_layer(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    weights = weights_for(MODEL_C, rng)
    weights[0]["kernel"] = weights[0]["kernel"][:, :4]
    write_keras_h5(tmp_path / "w.hdf5", MODEL_C, weights)
    with pytest.raises(GengapError, match="kernel has shape \\(5, 4\\), expected \\(5, 6\\)"):
        load_keras(MODEL_C, tmp_path / "w.hdf5")


def test_cli_predict_and_import(task_dir, tmp_path: Path) -> None:
    root, _ = task_dir
    runner = CliRunner()
    result = runner.invoke(app, ["pgdl", "predict", str(root), "--measure", "params",
                                 "--out", str(tmp_path / "pred"), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "task9 model_7: params" in result.output
    values = json.loads((tmp_path / "pred" / "task9.predict").read_text())
    assert sorted(values) == [f"model_{k}" for k in range(8)]
    result = runner.invoke(app, ["pgdl", "import", str(root), "--out", str(tmp_path / "zoo")])
    assert result.exit_code == 0, result.output
    assert "imported 8 models of task9" in result.output
    again = runner.invoke(app, ["pgdl", "import", str(root), "--out", str(tmp_path / "zoo")])
    assert again.exit_code == 0, again.output
    said = " ".join(again.output.split())
    assert f"nothing to import: all 8 models of task9 were already in {tmp_path / 'zoo'} " \
           "(axes:" in said
    bad = runner.invoke(app, ["pgdl", "predict", str(tmp_path), "--measure", "params",
                              "--out", str(tmp_path / "pred")])
    assert isinstance(bad.exception, GengapError) and "no model_* folders" in str(bad.exception)
    taken = tmp_path / "a_file"
    taken.write_text("kept")
    refused = runner.invoke(app, ["pgdl", "predict", str(root), "--measure", "params",
                                  "--out", str(taken)])  # checked before measuring
    assert "a_file: exists and is not a folder" in str(refused.exception)
    assert "task9 model_0" not in refused.output and taken.read_text() == "kept"
    twin = tmp_path / "elsewhere" / "task9"  # another task of the same name
    shutil.copytree(root, twin)
    clash = runner.invoke(app, ["pgdl", "predict", str(root), str(twin), "--measure", "params",
                                "--out", str(tmp_path / "pred2")])
    assert "would both write task9.predict" in str(clash.exception)
    assert "task9 model_0" not in clash.output  # refused before measuring


# -- the real toy task of the PGDL starting kit --------------------------------------------


@pytest.fixture
def toy() -> Path:
    if not TOY.is_dir():
        pytest.skip(f"PGDL toy task not found at {TOY}")
    return TOY


def test_toy_task_models_reproduce_their_reference_accuracies(toy: Path) -> None:
    task = load_task(toy)
    assert len(task.model_ids) == 18
    x, y = task.train_data
    x_test, y_test = task.test_data
    assert x.shape == (200, 3) and x_test.shape == (100, 3)
    for model_id in task.model_ids:
        net = task.model(model_id)
        with torch.no_grad():
            logits, logits_test = net(x), net(x_test)
        assert torch.isfinite(logits).all() and logits.shape == (200, 2)
        metrics = task.records[model_id].metrics
        # exact counts: the converted networks classify every example as the Keras ones did
        right = int((logits.argmax(1) == y).sum())
        right_test = int((logits_test.argmax(1) == y_test).sum())
        assert right == round(metrics["train_acc"] * 200)
        assert right_test == round(metrics["test_acc"] * 100)
    grid = hyperparameter_grid(task)
    assert grid == {"num_units": [64, 128, 256], "num_layers": [1, 2, 3],
                    "activation_function": ["relu", "tanh"]}


# -- one-line errors that name what is wrong -----------------------------------------------


def test_config_errors_name_the_argument_in_plain_english(tmp_path: Path) -> None:
    """They read "units must be 1 positive integers"; NaN sizes crashed with a traceback."""
    for layer, message in (
        ({"layer_name": "Dense", "units": 0}, "units must be a positive integer, got 0"),
        ({"layer_name": "Dense", "units": "many"}, "units must be a positive integer, got 'many'"),
        ({"layer_name": "Dense", "units": math.inf}, "units must be a positive integer, got inf"),
        ({"layer_name": "Dropout", "rate": "half"}, "rate must be a number, got 'half'"),
        ({"layer_name": "Dropout", "rate": 1.5}, "rate must be from 0 to 1, got 1.5"),
        ({"layer_name": "LeakyReLU", "alpha": None}, "alpha must be a number, got None"),
    ):
        with pytest.raises(GengapError) as err:
            build_keras(conv_config((4,), [layer]), tmp_path / "config.json")
        assert str(err.value) == f"{tmp_path / 'config.json'}: layer 0 " \
                                 f"({layer['layer_name']}): {message}"
    conv = {"layer_name": "Conv2D", "filters": 2, "kernel_size": [3]}
    with pytest.raises(GengapError, match=r"layer 0 \(Conv2D\): kernel_size must be a positive "
                                          r"integer or a list of 2 positive integers, got \[3\]"):
        build_keras(conv_config((5, 5, 1), [conv]), tmp_path / "config.json")
    with pytest.raises(GengapError, match="config.json: input_shape must be a list of positive "
                                          "integers, got \\[nan\\]"):
        build_keras(conv_config((math.nan,), [{"layer_name": "Dense", "units": 2}]),
                    tmp_path / "config.json")


def test_model_configs_errors_name_the_model_and_field(task_dir) -> None:
    root, _ = task_dir
    path = root / "model_configs.json"
    configs = json.loads(path.read_text())
    configs["3"]["metrics"]["test_acc"] = "high"
    path.write_text(json.dumps(configs))
    with pytest.raises(GengapError) as err:
        _ = load_task(root).records
    assert str(err.value) == f"{path}: model '3': metrics.test_acc is \"high\", not an " \
                             "accuracy (a number in [0, 1])"
    # read as the scorer reads them, the same entry is refused the same way
    with pytest.raises(GengapError) as err:
        read_reference(path)
    assert str(err.value).endswith("model '3': metrics.test_acc is \"high\", not an accuracy "
                                   "(a number in [0, 1])")
    configs["3"]["metrics"]["test_acc"] = 0.5
    for value, shown in ((True, "true"), (math.nan, "NaN"), (97.0, "97.0"), (-0.1, "-0.1")):
        configs["3"]["metrics"]["train_acc"] = value
        path.write_text(json.dumps(configs))
        for read in (lambda: load_task(root).records, lambda: read_reference(path)):
            with pytest.raises(GengapError, match=f"model '3': metrics.train_acc is {shown}, "
                                                  "not an accuracy"):
                read()
    configs["3"]["metrics"]["train_acc"] = 1
    configs["3"]["metrics"]["loss"] = "low"
    path.write_text(json.dumps(configs))
    with pytest.raises(GengapError, match="model '3': metrics.loss is \"low\", not a number"):
        _ = load_task(root).records
    configs["3"]["metrics"]["loss"] = "0.3"  # another metric that reads as a number is kept
    path.write_text(json.dumps(configs))
    assert load_task(root).records["model_3"].metrics["loss"] == 0.3
    del configs["3"]["metrics"]["loss"]
    del configs["3"]["hparams"]["pool"]["current_value"]
    configs["3"]["metrics"]["test_acc"] = 0.5
    path.write_text(json.dumps(configs))
    with pytest.raises(GengapError, match="model '3': hyperparameter 'pool' has no "
                                          "'current_value'"):
        _ = load_task(root).records


def test_the_task_and_the_scorer_name_models_alike(tmp_path: Path) -> None:
    # the loader prefixed keys that did not start with "model_", the scorer those without
    # "model" in them: "mymodel" was two different models
    entry = {"hparams": {"depth": {"possible_values": [1, 2], "current_value": 1}},
             "metrics": {"train_acc": 1.0, "test_acc": 0.5}}
    path = tmp_path / "model_configs.json"
    path.write_text(json.dumps({"0": entry, "mymodel": entry, "model_7": entry}))
    from gengap.interop.pgdl import read_model_configs

    assert sorted(read_model_configs(path)) == sorted(read_reference(path).frame.index) == [
        "model_0", "model_7", "mymodel"]
    path.write_text(json.dumps({"0": entry, "model_0": entry}))
    with pytest.raises(GengapError, match="model 'model_0': its id model_0 repeats"):
        read_model_configs(path)
    with pytest.raises(GengapError, match="model ids repeat"):
        read_reference(path)


@pytest.mark.parametrize(("measure", "needs"), [
    ("optim_steps_to_0.1", "records of the training run"),
    ("disagreement", "a second run that differs only in seed"),
])
def test_predict_names_a_measure_that_a_task_cannot_feed(task_dir, tmp_path: Path,
                                                         measure: str, needs: str) -> None:
    """It said only "this measure needs the training run's records (trajectory)"."""
    root, _ = task_dir
    result = CliRunner().invoke(app, ["pgdl", "predict", str(root), "--measure", measure,
                                      "--out", str(tmp_path / "pred"), "--device", "cpu"])
    assert str(result.exception).endswith(
        f"measure {measure!r} needs {needs}, which a PGDL task does not have; pick one that "
        "needs only weights, initial weights and training data")
    assert "--measure" in str(result.exception)  # blamed on the option (see its --help)
    assert not (tmp_path / "pred").exists()  # refused before any work


def test_predict_names_the_measure_and_model_that_lack_initial_weights(task_dir) -> None:
    root, _ = task_dir
    (root / "model_2" / "weights_init.hdf5").unlink()
    with pytest.raises(GengapError) as err:
        predict_task(load_task(root), "frobenius_distance", device="cpu")
    assert str(err.value).startswith(f"{root / 'model_2'}: frobenius_distance: "
                                     "this measure needs the initial weights")


def test_an_output_folder_inside_a_task_folder_is_refused(task_dir, tmp_path: Path) -> None:
    """`pgdl import T --out T/model_99` made T/model_99, which then broke task T."""
    root, _ = task_dir
    before = sorted(p.name for p in root.iterdir())
    link = tmp_path / "link"
    link.symlink_to(root)
    runner = CliRunner()
    for command, out in (
        (["pgdl", "import", str(root)], root / "model_99"),
        (["pgdl", "import", str(root)], root),
        (["pgdl", "import", str(link)], root / "zoo"),  # the same folder by another name
        (["pgdl", "predict", str(root), "--measure", "params"], root / "model_predictions"),
    ):
        result = runner.invoke(app, [*command, "--out", str(out)])
        assert isinstance(result.exception, GengapError), result.output
        assert str(result.exception).startswith(f"{out}: is"), str(result.exception)
        assert "an input of this command; write elsewhere" in str(result.exception)
    assert sorted(p.name for p in root.iterdir()) == before
    assert len(load_task(root).model_ids) == 8
    other = tmp_path / "other"  # another task: its folder is refused as well
    write_task(other)
    for command in (["pgdl", "import", str(root)],
                    ["pgdl", "predict", str(root), "--measure", "params"]):
        result = runner.invoke(app, [*command, "--out", str(other / "model_99")])
        assert f"is inside the PGDL task folder {other}" in str(result.exception)
    assert not (other / "model_99").exists()
    # the Python import refuses the same folders, its own task's included
    for out in (root / "model_99", root, other / "zoo"):
        with pytest.raises(GengapError, match="PGDL task folder") as err:
            import_task(root, out)
        assert len(str(err.value).splitlines()) == 1
    assert sorted(p.name for p in root.iterdir()) == before
    assert not (other / "zoo").exists()
