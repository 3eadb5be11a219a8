"""The whole pipeline end to end on a tiny digits grid, through the CLI and the Python API."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

from gengap.data import load
from gengap.specs import RunSpec
from gengap.train import fit
from gengap.zoo import Store, load_model


def gengap(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gengap.cli", *args], capture_output=True, text=True, timeout=600
    )


def test_train_measure_evaluate_end_to_end(tiny_zoo_toml: Path, tmp_path: Path):
    out = tmp_path / "zoo"
    trained = gengap("zoo", "train", str(tiny_zoo_toml), "--out", str(out))
    assert trained.returncode == 0, trained.stderr
    store = Store(out)
    assert store.counts() == {"pending": 0, "done": 4, "failed": 0}

    measured = gengap("measure", str(out), "--measures", "size,output,norm")
    assert measured.returncode == 0, measured.stderr
    frame = store.frame()
    for name in ("params", "frobenius_distance", "param_norm", "prod_of_spec", "margin",
                 "inverse_margin", "path_norm"):
        assert frame[name].notna().all(), name
    assert (frame["gap"] == frame["train_acc"] - frame["test_acc"]).all()

    table_file = tmp_path / "table.csv"
    evaluated = gengap("evaluate", str(out), "--out", str(table_file))
    assert evaluated.returncode == 0, evaluated.stderr
    assert "path_norm" in evaluated.stdout and "tau" in evaluated.stdout
    assert table_file.read_text().startswith("measure,tau,psi")

    status = gengap("zoo", "status", str(out))
    assert "4 done" in status.stdout
    names = len(Store(out).measure_names())
    assert f"measures: {names} stored; 4 of 4 done runs have every one, 0 some, 0 none" \
        in status.stdout

    again = gengap("zoo", "train", str(tiny_zoo_toml), "--out", str(out))
    assert again.returncode == 0 and Store(out).counts()["done"] == 4


def test_stored_weights_are_the_trained_ones_bit_for_bit(tiny_zoo_toml: Path, tmp_path: Path):
    from gengap.zoo import load_zoo_spec, train_zoo

    zoo = load_zoo_spec(tiny_zoo_toml)
    store = train_zoo(zoo, tmp_path / "zoo")
    run = zoo.runs()[0]
    splits = load(run.data)
    stored = load_model(store, run, splits, "final").state_dict()
    again = fit(RunSpec.model_validate_json(run.canonical_json()), splits, device="cpu")
    for key, tensor in again.final_state.items():
        assert torch.equal(stored[key], tensor), key
    assert store.frame().loc[0, "train_acc"] == again.metrics["train_acc"]
