"""Small CNN Zoo import on small files in its format written here: TF kernel layout, bias
before kernel, metrics aligned with the weight rows, networks that compute what the zoo's
Keras networks compute (an independent numpy forward), and `gengap measure` on the result."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from gengap.cli.app import app
from gengap.errors import GengapError
from gengap.interop.cnnzoo import import_cnnzoo, read_cnnzoo
from gengap.models import build
from gengap.zoo import measure_zoo

# (name, shape) in file order: bias before kernel within each layer, as in the real layout
TENSORS = [
    ("sequential/conv2d/bias:0", (4,)), ("sequential/conv2d/kernel:0", (3, 3, 1, 4)),
    ("sequential/conv2d_1/bias:0", (4,)), ("sequential/conv2d_1/kernel:0", (3, 3, 4, 4)),
    ("sequential/conv2d_2/bias:0", (4,)), ("sequential/conv2d_2/kernel:0", (3, 3, 4, 4)),
    ("sequential/dense/bias:0", (10,)), ("sequential/dense/kernel:0", (4, 10)),
]
RUNS = [("run_a", "relu", 0.0), ("run_b", "tanh", 0.3)]


def write_cnnzoo(folder: Path) -> np.ndarray:
    """Two runs, each with a step-0 and a step-86 checkpoint; returns the weight matrix."""
    folder.mkdir()
    rows, start = [], 0
    for name, shape in TENSORS:
        size = int(np.prod(shape))
        rows.append({"varname": name, "start_idx": start, "end_idx": start + size,
                     "shape": str(shape)})
        start += size
    pd.DataFrame(rows).to_csv(folder / "layout.csv")  # with the index column, like the real one
    rng = np.random.default_rng(0)
    weights = rng.normal(0, 0.4, (4, start)).astype(np.float32)
    np.save(folder / "weights.npy", weights)
    metrics = []
    for modeldir, activation, dropout in RUNS:
        for step in (0, 86):
            metrics.append({
                "modeldir": modeldir, "step": step, "config.activation": activation,
                "config.dropout": dropout, "config.dataset": "mnist", "config.l2reg": 1e-4,
                "config.learning_rate": 0.01, "config.optimizer": "adam",
                "train_accuracy": 0.1 if step == 0 else 0.9, "test_accuracy": 0.8,
                "train_loss": 1.0, "test_loss": 1.1,
            })
    with gzip.open(folder / "metrics.csv.gz", "wt") as handle:
        pd.DataFrame(metrics).to_csv(handle, index=False)
    return weights


def np_cnn(flat: np.ndarray, x: np.ndarray, activation: str) -> np.ndarray:
    """The zoo's build_cnn on channels-last float64 inputs: 3 valid 3x3 stride-2 convs, GAP,
    dense; parameters read straight from the flat TF-layout vector."""
    act = {"relu": lambda v: np.maximum(v, 0), "tanh": np.tanh}[activation]
    tensors, start = {}, 0
    for name, shape in TENSORS:
        size = int(np.prod(shape))
        tensors[name] = flat[start : start + size].astype(np.float64).reshape(shape)
        start += size
    h = x.astype(np.float64)
    for layer in ("conv2d", "conv2d_1", "conv2d_2"):
        k, b = tensors[f"sequential/{layer}/kernel:0"], tensors[f"sequential/{layer}/bias:0"]
        out_h, out_w = (h.shape[1] - 3) // 2 + 1, (h.shape[2] - 3) // 2 + 1
        out = np.zeros((len(h), out_h, out_w, k.shape[3]))
        for i in range(out_h):
            for j in range(out_w):
                out[:, i, j] = np.einsum("nabc,abco->no", h[:, 2 * i : 2 * i + 3,
                                                          2 * j : 2 * j + 3], k)
        h = act(out + b)
    h = h.mean(axis=(1, 2))
    return h @ tensors["sequential/dense/kernel:0"] + tensors["sequential/dense/bias:0"]


def write_mnist(folder: Path, n: int = 40) -> None:
    """Tiny IDX files in DIR/mnist/ for the cnnzoo data source."""
    rng = np.random.default_rng(3)
    (folder / "mnist").mkdir(parents=True)
    for prefix in ("train", "t10k"):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        (folder / "mnist" / f"{prefix}-images-idx3-ubyte").write_bytes(
            b"\x00\x00\x08\x03" + struct.pack(">3I", n, 28, 28) + images.tobytes())
        (folder / "mnist" / f"{prefix}-labels-idx1-ubyte").write_bytes(
            b"\x00\x00\x08\x01" + struct.pack(">I", n) + labels.tobytes())


def test_import_keeps_final_and_init_checkpoints_in_torch_layout(tmp_path: Path) -> None:
    weights = write_cnnzoo(tmp_path / "mnist_zoo")
    store = import_cnnzoo(tmp_path / "mnist_zoo", tmp_path / "zoo")
    frame = store.frame()
    assert list(frame["status"]) == ["done", "done"]
    assert list(frame["modeldir"]) == ["run_a", "run_b"]
    assert list(frame["train_acc"]) == [0.9, 0.9] and list(frame["gap"]) == pytest.approx([0.1] * 2)
    assert list(frame["hp.activation"]) == ["relu", "tanh"]
    run = store.runs()[0]
    final, init = store.load_weights(run.run_id, "final"), store.load_weights(run.run_id, "init")
    # layer 1's kernel: columns 4..40 of row 1 (run_a's step 86), (kh, kw, cin, cout) -> OIHW
    kernel = weights[1, 4:40].reshape(3, 3, 1, 4).transpose(3, 2, 0, 1)
    np.testing.assert_array_equal(final["l0_conv2d.weight"].numpy(), kernel)
    np.testing.assert_array_equal(final["l0_conv2d.bias"].numpy(), weights[1, 0:4])
    np.testing.assert_array_equal(init["l0_conv2d.bias"].numpy(), weights[0, 0:4])
    dense = weights[1, -40:].reshape(4, 10).T
    np.testing.assert_array_equal(final[next(k for k in final if "dense.weight" in k)].numpy(),
                                  dense)


@pytest.mark.parametrize("which", [0, 1])
def test_imported_networks_compute_what_the_zoo_networks_compute(tmp_path: Path,
                                                                 which: int) -> None:
    weights = write_cnnzoo(tmp_path / "mnist_zoo")
    store = import_cnnzoo(tmp_path / "mnist_zoo", tmp_path / "zoo")
    run = store.runs()[which]
    net = build(run.arch, (1, 28, 28), 10)
    net.load_state_dict(store.load_weights(run.run_id, "final"))
    net.eval()
    x = np.random.default_rng(1).uniform(-1, 1, (3, 28, 28, 1)).astype(np.float32)
    with torch.no_grad():
        got = net(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).double().numpy()
    expected = np_cnn(weights[2 * which + 1], x, RUNS[which][1])
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_measure_an_imported_zoo_on_the_zoo_preprocessing(tmp_path: Path) -> None:
    write_cnnzoo(tmp_path / "mnist_zoo")
    write_mnist(tmp_path / "data")
    store = import_cnnzoo(tmp_path / "mnist_zoo", tmp_path / "zoo", limit=1)
    assert store.counts()["done"] == 1
    assert measure_zoo(store, "param_norm,margin", device="cpu",
                       data_dir=tmp_path / "data") == 1
    assert np.isfinite(store.frame()[["param_norm", "margin"]].to_numpy()).all()
    from gengap.data import load

    splits = load(store.runs()[0].data, tmp_path / "data")
    assert splits.input_shape == (1, 28, 28)
    assert float(splits.x_train.min()) >= -1.0 and float(splits.x_train.max()) <= 1.0


def test_runs_without_usable_initial_weights_are_measured_without_them(tmp_path: Path) -> None:
    weights = write_cnnzoo(tmp_path / "mnist_zoo")
    weights[0, :4] = np.inf  # run_a's step 0 is not finite: imported without init
    np.save(tmp_path / "mnist_zoo" / "weights.npy", weights)
    write_mnist(tmp_path / "data")
    store = import_cnnzoo(tmp_path / "mnist_zoo", tmp_path / "zoo")
    first, second = store.runs()
    assert not store.weights_path(first.run_id, "init").exists()
    assert store.weights_path(second.run_id, "init").exists()
    measure_zoo(store, "param_norm,frobenius_distance", device="cpu",
                data_dir=tmp_path / "data")
    frame = store.frame().set_index("run_id")
    assert np.isfinite(frame["param_norm"]).all()
    assert np.isnan(frame.loc[first.run_id, "frobenius_distance"])
    assert np.isfinite(frame.loc[second.run_id, "frobenius_distance"])


def test_a_bad_metrics_table_leaves_no_zoo_folder(tmp_path: Path) -> None:
    write_cnnzoo(tmp_path / "z")
    metrics = pd.read_csv(tmp_path / "z" / "metrics.csv.gz")
    metrics["step"] = metrics["step"].astype(object)
    metrics.loc[3, "step"] = "final"
    with gzip.open(tmp_path / "z" / "metrics.csv.gz", "wt") as handle:
        metrics.to_csv(handle, index=False)
    with pytest.raises(GengapError, match="row 3 has no modeldir or no integer step"):
        import_cnnzoo(tmp_path / "z", tmp_path / "zoo")
    assert not (tmp_path / "zoo").exists()


@pytest.mark.parametrize("edit, message", [
    (("metrics", "train_accuracy", 2, "high"), "row 2 has train_accuracy 'high', expected a "
     "number within [0, 1]"),
    (("metrics", "test_accuracy", 1, 1.5), "row 1 has test_accuracy 1.5"),
    (("layout", "start_idx", 2, "abc"), "row 2 needs whole, non-negative start_idx"),
    (("layout", "start_idx", 2, None), "row 2 needs whole, non-negative start_idx"),
    (("layout", "start_idx", 0, -5), "row 0 needs whole, non-negative start_idx"),
    # two checkpoints of run_a at step 86: the first was imported as final, silently
    (("metrics", "step", 0, 86), "row 1 repeats modeldir 'run_a' at step 86"),
])
def test_bad_numbers_in_the_tables_are_one_line_errors_and_no_zoo(tmp_path: Path, edit,
                                                                   message) -> None:
    """They were tracebacks (a non-number) or were taken as they came (an accuracy of 1.5)."""
    write_cnnzoo(tmp_path / "z")
    table, column, row, value = edit
    if table == "metrics":
        frame = pd.read_csv(tmp_path / "z" / "metrics.csv.gz")
        frame[column] = frame[column].astype(object)
        frame.loc[row, column] = value
        with gzip.open(tmp_path / "z" / "metrics.csv.gz", "wt") as handle:
            frame.to_csv(handle, index=False)
    else:
        frame = pd.read_csv(tmp_path / "z" / "layout.csv", index_col=0)
        frame[column] = frame[column].astype(object)
        frame.loc[row, column] = value
        frame.to_csv(tmp_path / "z" / "layout.csv")
    with pytest.raises(GengapError) as err:
        import_cnnzoo(tmp_path / "z", tmp_path / "zoo")
    assert message in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "zoo").exists()


def test_overlapping_tensors_in_the_layout_are_refused(tmp_path: Path) -> None:
    write_cnnzoo(tmp_path / "z")
    frame = pd.read_csv(tmp_path / "z" / "layout.csv", index_col=0)
    last = frame.index[-1]
    size = int(frame.loc[last, "end_idx"] - frame.loc[last, "start_idx"])
    frame.loc[last, ["start_idx", "end_idx"]] = [0, size]  # reads the first tensor's weights
    frame.to_csv(tmp_path / "z" / "layout.csv")
    with pytest.raises(GengapError, match="overlap"):
        read_cnnzoo(tmp_path / "z")


def test_bad_files_are_one_line_errors(tmp_path: Path) -> None:
    write_cnnzoo(tmp_path / "z")
    (tmp_path / "z" / "weights.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(GengapError, match="weights.npy: not a readable .npy array") as err:
        read_cnnzoo(tmp_path / "z")
    assert "\n" not in str(err.value)
    (tmp_path / "z" / "weights.npy").write_text("0.1,0.2\n")
    with pytest.raises(GengapError, match="weights.npy: not a .npy file"):
        read_cnnzoo(tmp_path / "z")
    np.save(tmp_path / "z" / "weights.npy", np.array([{"a": 1}], dtype=object),
            allow_pickle=True)  # an object array: refused, never unpickled
    with pytest.raises(GengapError, match="weights.npy"):
        read_cnnzoo(tmp_path / "z")
    columns = sum(int(np.prod(shape)) for _, shape in TENSORS)
    np.save(tmp_path / "z" / "weights.npy", np.zeros((3, columns), np.float32))
    with pytest.raises(GengapError, match="metrics.csv.gz: 4 rows, weights.npy has 3"):
        read_cnnzoo(tmp_path / "z")
    # columns the layout does not describe: they were ignored (more) or blamed on a layout
    # row (fewer)
    for wrong in (columns + 30, columns - 30):
        np.save(tmp_path / "z" / "weights.npy", np.zeros((4, wrong), np.float32))
        with pytest.raises(GengapError, match=rf"weights.npy: {wrong} columns, where layout.csv "
                                              rf"describes {columns} weights"):
            read_cnnzoo(tmp_path / "z")


def test_the_accuracy_columns_are_required(tmp_path: Path) -> None:
    write_cnnzoo(tmp_path / "z")
    frame = pd.read_csv(tmp_path / "z" / "metrics.csv.gz").drop(columns="train_accuracy")
    with gzip.open(tmp_path / "z" / "metrics.csv.gz", "wt") as handle:
        frame.to_csv(handle, index=False)
    with pytest.raises(GengapError, match="missing column 'train_accuracy'"):
        import_cnnzoo(tmp_path / "z", tmp_path / "zoo")
    assert not (tmp_path / "zoo").exists()


def test_a_last_checkpoint_without_an_accuracy_is_a_failed_run(tmp_path: Path) -> None:
    """It imported as done without a gap, and evaluate counted it in n while ranking without
    it. An earlier checkpoint without one is no matter (only the last is imported)."""
    write_cnnzoo(tmp_path / "z")
    frame = pd.read_csv(tmp_path / "z" / "metrics.csv.gz")
    frame.loc[[0, 3], "train_accuracy"] = np.nan  # run_a's step 0, run_b's last
    with gzip.open(tmp_path / "z" / "metrics.csv.gz", "wt") as handle:
        frame.to_csv(handle, index=False)
    table = import_cnnzoo(tmp_path / "z", tmp_path / "zoo").frame().set_index("modeldir")
    assert list(table["status"]) == ["done", "failed"]
    assert table.loc["run_b", "reason"] == ("its last checkpoint (metrics row 3) has no "
                                            "train_accuracy")


def test_a_run_with_only_its_step_0_checkpoint_is_failed(tmp_path: Path) -> None:
    """It was imported as done, its untrained weights taken for the final network."""
    weights = write_cnnzoo(tmp_path / "z")
    metrics = pd.read_csv(tmp_path / "z" / "metrics.csv.gz")
    keep = ~((metrics["modeldir"] == "run_b") & (metrics["step"] == 86))
    with gzip.open(tmp_path / "z" / "metrics.csv.gz", "wt") as handle:
        metrics[keep].to_csv(handle, index=False)
    np.save(tmp_path / "z" / "weights.npy", weights[keep.to_numpy()])
    store = import_cnnzoo(tmp_path / "z", tmp_path / "zoo")
    frame = store.frame().set_index("modeldir")
    assert frame.loc["run_a", "status"] == "done" and frame.loc["run_b", "status"] == "failed"
    assert frame.loc["run_b", "reason"] == ("only its step-0 checkpoint is in the file: the "
                                            "run has no trained weights")


def test_cli_import_cnnzoo(tmp_path: Path) -> None:
    write_cnnzoo(tmp_path / "mnist_zoo")
    command = ["zoo", "import-cnnzoo", str(tmp_path / "mnist_zoo"), "--out", str(tmp_path / "zoo")]
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 0, result.output
    assert "imported 2 networks" in result.output
    # a second import says what it added: nothing, or the networks an earlier one lacked
    result = CliRunner().invoke(app, command)
    said = " ".join(result.output.split())
    assert (f"nothing to import: all 2 networks were already in {tmp_path / 'zoo'} (0 "
            "recorded as failed") in said

    def interrupt(_: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # stopped after the first network
        import_cnnzoo(tmp_path / "mnist_zoo", tmp_path / "zoo2", on_run=interrupt)
    result = CliRunner().invoke(app, [*command[:-1], str(tmp_path / "zoo2")])
    said = " ".join(result.output.split())
    assert f"imported 1 more networks into {tmp_path / 'zoo2'} (2 now) (0 recorded" in said


@pytest.mark.parametrize(("column", "value", "message"), [
    ("config.activation", "swishy", "config.activation 'swishy' is not supported"),
    ("config.dropout", "lots", "config.dropout 'lots' is not a dropout rate in \\[0, 1\\)"),
    ("config.dropout", 1.5, "config.dropout 1.5 is not a dropout rate"),
    ("config.dropout", -0.2, "config.dropout -0.2 is not a dropout rate"),
])
def test_a_bad_setting_in_the_metrics_names_metrics_not_layout(tmp_path: Path, column: str,
                                                                value: object,
                                                                message: str) -> None:
    """A bad activation or dropout of metrics.csv.gz was blamed on layout.csv (or crashed)."""
    write_cnnzoo(tmp_path / "z")
    metrics = pd.read_csv(tmp_path / "z" / "metrics.csv.gz")
    metrics[column] = metrics[column].astype(object)
    metrics.loc[1, column] = value
    with gzip.open(tmp_path / "z" / "metrics.csv.gz", "wt") as handle:
        metrics.to_csv(handle, index=False)
    with pytest.raises(GengapError, match=f"metrics.csv.gz: row 1: {message}") as err:
        import_cnnzoo(tmp_path / "z", tmp_path / "zoo")
    assert "layout.csv" not in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "zoo").exists()


def test_an_unreadable_table_is_named_alone(tmp_path: Path) -> None:
    write_cnnzoo(tmp_path / "z")
    (tmp_path / "z" / "metrics.csv.gz").write_bytes(b"not gzip")
    with pytest.raises(GengapError) as err:
        read_cnnzoo(tmp_path / "z")
    assert str(err.value).startswith(f"{tmp_path / 'z' / 'metrics.csv.gz'}: not a readable CSV")
    assert "layout.csv" not in str(err.value)


def test_a_limited_import_can_be_extended(tmp_path: Path) -> None:
    write_cnnzoo(tmp_path / "mnist_zoo")
    first = import_cnnzoo(tmp_path / "mnist_zoo", tmp_path / "zoo", limit=1)
    (kept,) = first.runs()
    weights = first.weights_path(kept.run_id, "final").read_bytes()
    grown = import_cnnzoo(tmp_path / "mnist_zoo", tmp_path / "zoo")
    assert [r.run_id for r in grown.runs()][0] == kept.run_id
    assert grown.counts()["done"] == 2 and len(grown.zoo.runs()) == 2
    assert grown.weights_path(kept.run_id, "final").read_bytes() == weights
    # a smaller import again: nothing to do, the zoo keeps both runs
    again = import_cnnzoo(tmp_path / "mnist_zoo", tmp_path / "zoo", limit=1)
    assert again.counts()["done"] == 2 and len(again.zoo.runs()) == 2
    # another zoo's folder is still refused
    other = tmp_path / "other"
    other.mkdir()
    write_cnnzoo(other / "fashion_zoo")
    with pytest.raises(GengapError, match="different spec"):
        import_cnnzoo(other / "fashion_zoo", tmp_path / "zoo")


def test_a_bias_without_its_kernel_names_its_layout_row(tmp_path: Path) -> None:
    write_cnnzoo(tmp_path / "z")
    frame = pd.read_csv(tmp_path / "z" / "layout.csv", index_col=0)
    frame.loc[3, "varname"] = "sequential/conv2d_1/bias_copy/bias:0"  # was conv2d_1's kernel
    frame.to_csv(tmp_path / "z" / "layout.csv")
    with pytest.raises(GengapError, match=r"layout.csv: row 2 \(sequential/conv2d_1/bias:0\) is "
                                          "a bias without its kernel"):
        import_cnnzoo(tmp_path / "z", tmp_path / "zoo")
    assert not (tmp_path / "zoo").exists()
