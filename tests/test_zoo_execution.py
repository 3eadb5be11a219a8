"""Executing zoos: populations against one-at-a-time training, failed runs, process pools,
export, resuming after kill -9, and Ray."""

from __future__ import annotations

import contextlib
import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from safetensors.torch import load_file

from gengap.zoo import Store, Zoo, parse_zoo_spec, train_zoo

METRICS = ["train_loss", "train_acc", "test_loss", "test_acc", "epochs", "steps"]


def small_zoo(**train) -> dict:
    return {
        "name": "small",
        "seeds": [0, 1],
        "data": {"name": "digits", "train_fraction": 0.2},
        "arch": {"family": "mlp", "width": 16, "depth": 1},
        "train": {"lr": [0.02, 0.05], "weight_decay": [0.0, 1e-3], "max_epochs": 3,
                  "target_ce": 0.0, "checkpoints": [2], **train},
    }


def assert_same_metrics(a: pd.DataFrame, b: pd.DataFrame, tol: float = 1e-5) -> None:
    a, b = a.set_index("run_id").sort_index(), b.set_index("run_id").sort_index()
    assert list(a.index) == list(b.index)
    assert list(a["status"]) == list(b["status"])
    for column in METRICS:
        assert a[column].to_numpy() == pytest.approx(b[column].to_numpy(), abs=tol, nan_ok=True)


def test_population_zoo_equals_one_at_a_time(tmp_path: Path):
    zoo = parse_zoo_spec(small_zoo())
    alone = train_zoo(zoo, tmp_path / "alone", device="cpu", population="off")
    together = train_zoo(zoo, tmp_path / "together", device="cpu", population="on")
    frame = together.frame()
    assert (frame["population"] == 4).all()  # lr x weight_decay, one population per seed
    assert "population" not in alone.frame()
    assert_same_metrics(alone.frame(), frame)
    for run_id in frame["run_id"]:
        assert together.weight_names(run_id) == ["epoch2", "final", "init"]


def test_diverging_runs_are_recorded_as_failed(tmp_path: Path):
    zoo = parse_zoo_spec({**small_zoo(lr=[0.05, 1e30], momentum=0.0), "seeds": [0]})
    for population in ("off", "on"):
        store = train_zoo(zoo, tmp_path / population, device="cpu", population=population)
        frame = store.frame().set_index("train.lr")
        assert store.counts() == {"pending": 0, "done": 2, "failed": 2}
        assert (frame.loc[1e30, "status"] == "failed").all()
        assert frame.loc[1e30, "reason"].str.startswith("diverged: training loss is").all()
        assert (frame.loc[0.05, "status"] == "done").all()


def test_process_pool_with_populations_and_export(tmp_path: Path):
    zoo = parse_zoo_spec(small_zoo())
    store = train_zoo(zoo, tmp_path / "pool", workers=2, device="cpu", population="on")
    reference = train_zoo(zoo, tmp_path / "one", device="cpu", population="off")
    assert_same_metrics(reference.frame(), store.frame(), tol=1e-4)

    out = tmp_path / "zoo.parquet"
    result = subprocess.run(
        [sys.executable, "-m", "gengap.cli", "zoo", "export", str(tmp_path / "pool"),
         "--parquet", str(out)], capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    table = pd.read_parquet(out)
    expected = Zoo(tmp_path / "pool").frame()
    pd.testing.assert_frame_equal(table, expected, check_dtype=False)
    assert len(table) == 8 and table["run_id"].is_unique
    for column in ("arch.family", "train.lr", "train.optimizer", "data.name", "seed", "status",
                   "test_acc", "gap"):
        assert column in table.columns
    assert set(table["train.lr"]) == {0.02, 0.05} and set(table["arch.family"]) == {"mlp"}
    assert table["train.checkpoints"].iloc[0] == "[2]"
    assert table["data.options"].iloc[0] == "{}" and table["arch.options"].iloc[0] == "{}"
    # promised columns even when no run reached the level (3 epochs do not reach 0.01)
    assert table["steps_to_ce_0.01"].isna().all() and "steps_to_ce_0.1" in table

    bad = subprocess.run(
        [sys.executable, "-m", "gengap.cli", "zoo", "export", str(tmp_path / "nothing"),
         "--parquet", str(out)], capture_output=True, text=True, timeout=120,
    )
    assert bad.returncode == 2 and "no such zoo folder" in bad.stderr


RESUME_ZOO = """
name = "resume"
seeds = [0, 1, 2]

[data]
name = "digits"

[arch]
family = "mlp"
width = [32, 64]

[train]
lr = [0.01, 0.02]
max_epochs = 12
target_ce = 0.0
checkpoints = [5]
"""


def done_count(db: Path) -> int:
    try:
        with sqlite3.connect(db, timeout=5) as con:
            return con.execute("SELECT COUNT(*) FROM runs WHERE status='done'").fetchone()[0]
    except sqlite3.Error:
        return 0


@pytest.mark.slow
def test_resume_after_kill_minus_nine_with_workers_and_populations(tmp_path: Path):
    spec = tmp_path / "zoo.toml"
    spec.write_text(RESUME_ZOO)
    out = tmp_path / "zoo"
    command = [sys.executable, "-m", "gengap.cli", "zoo", "train", str(spec), "--out", str(out),
               "--workers", "2", "--device", "cpu", "--population", "on"]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 300
    while done_count(out / "gengap.sqlite") < 2 and time.time() < deadline:
        assert proc.poll() is None, "the zoo finished before it could be killed"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the parent and its workers
    proc.wait()
    assert 2 <= done_count(out / "gengap.sqlite") < 12

    finished = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr
    store = Store(out)
    frame = store.frame()
    assert len(frame) == 12 and frame["run_id"].is_unique
    assert (frame["status"] == "done").all() and (frame["population"] == 2).all()
    for run_id in frame["run_id"]:
        assert store.weight_names(run_id) == ["epoch5", "final", "init"]
        for which in store.weight_names(run_id):
            assert load_file(str(store.weights_path(run_id, which)))
    leftovers = [p for p in (out / "weights").rglob("*") if ".tmp" in p.name]
    assert not leftovers or all(p.parent.name in set(frame["run_id"]) for p in leftovers)
    again = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "12 done, 0 failed, 0 pending" in again.stdout


def children(pid: int) -> set[int]:
    """Processes whose parent is ``pid`` (Linux /proc)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has ended, waiting to be reaped


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="the parent-death signal is Linux's")
def test_pool_workers_end_with_a_killed_parent(tmp_path: Path):
    spec = tmp_path / "zoo.toml"
    spec.write_text(RESUME_ZOO.replace("max_epochs = 12", "max_epochs = 500"))
    command = [sys.executable, "-m", "gengap.cli", "zoo", "train", str(spec), "--out",
               str(tmp_path / "zoo"), "--workers", "2", "--device", "cpu"]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.time() + 120
        while len(children(proc.pid)) < 2 and time.time() < deadline:
            assert proc.poll() is None
            time.sleep(0.1)
        time.sleep(5)  # the workers start training (importing torch, loading the data)
        workers = children(proc.pid)  # and multiprocessing's resource tracker
        assert len(workers) >= 2 and proc.poll() is None
        os.kill(proc.pid, signal.SIGKILL)  # the parent alone
        proc.wait()
        deadline = time.time() + 20
        while any(alive(pid) for pid in workers) and time.time() < deadline:
            time.sleep(0.1)
        assert not [pid for pid in workers if alive(pid)]
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_a_zoo_on_ray_gives_the_local_metrics(tmp_path: Path, local_ray):
    raw = small_zoo(lr=[0.02, 0.05, 1e30], momentum=0.0)
    raw["arch"]["width"] = [8, 16]  # two shapes: populations and single runs
    zoo = parse_zoo_spec(raw)
    local = train_zoo(zoo, tmp_path / "local", device="cpu", population="off")
    on_ray = train_zoo(zoo, tmp_path / "ray", device="cpu", executor="ray", population="on")
    assert on_ray.counts() == local.counts() == {"pending": 0, "done": 16, "failed": 8}
    assert_same_metrics(local.frame(), on_ray.frame(), tol=1e-4)
    for run_id in on_ray.frame().query("status == 'done'")["run_id"]:
        for which in ("init", "epoch2", "final"):
            mine, theirs = (load_file(str(s.weights_path(run_id, which))) for s in (on_ray, local))
            assert all(
                math.isclose(float((mine[k] - theirs[k]).abs().max()), 0, abs_tol=1e-4)
                for k in theirs
            )
    # resuming on Ray trains nothing more
    again = train_zoo(zoo, tmp_path / "ray", device="cpu", executor="ray")
    assert again.counts() == on_ray.counts()


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has CUDA")
def test_ray_trains_on_the_device_its_cluster_has(tmp_path: Path, local_ray, tiny_zoo_toml):
    """auto asked Ray for no GPU, and the command refused --device cuda on a machine without
    one, whatever the cluster had; a cluster without GPUs would make cuda tasks wait forever."""
    from typer.testing import CliRunner

    from gengap.cli.app import app
    from gengap.errors import GengapError
    from gengap.zoo import load_zoo_spec

    zoo = load_zoo_spec(tiny_zoo_toml)
    assert train_zoo(zoo, tmp_path / "auto", executor="ray").counts()["done"] == len(zoo.runs())
    with pytest.raises(GengapError, match="--device cuda: the Ray cluster has no GPU"):
        train_zoo(zoo, tmp_path / "cuda", device="cuda", executor="ray")
    command = CliRunner().invoke(app, ["zoo", "train", str(tiny_zoo_toml), "--out",
                                       str(tmp_path / "cli"), "--executor", "ray",
                                       "--device", "cuda"])
    assert isinstance(command.exception, GengapError)
    assert "the Ray cluster has no GPU" in str(command.exception)
    assert not (tmp_path / "cuda").exists() and not (tmp_path / "cli").exists()


def test_an_interrupted_ray_zoo_cancels_its_tasks_before_ray_shuts_down(tmp_path: Path,
                                                                         monkeypatch):
    """Ctrl-C while outcomes arrived shut Ray down first; the generator's late cancel then
    started a new local Ray (a stand-in Ray module logs the order)."""
    import sys
    import types

    from gengap.specs import ZooSpec
    from gengap.zoo import run as run_module
    from gengap.zoo.worker import RunOutcome

    log: list[str] = []
    state = {"up": False}
    pending: list[str] = []
    fake = types.ModuleType("ray")
    fake.is_initialized = lambda: state["up"]  # type: ignore[attr-defined]
    fake.init = lambda **_: (state.update(up=True), log.append("init"))  # type: ignore[attr-defined]
    fake.shutdown = lambda: (state.update(up=False), log.append("shutdown"))  # type: ignore[attr-defined]
    fake.remote = lambda **_: (lambda fn: types.SimpleNamespace(  # type: ignore[attr-defined]
        remote=lambda *args: object()))
    fake.wait = lambda refs, num_returns=1: (refs[:1], refs[1:])  # type: ignore[attr-defined]
    fake.get = lambda ref: [RunOutcome(run_id=pending.pop(0), status="failed", metrics={},  # type: ignore[attr-defined]
                                       history=[], reason="stand-in")]
    fake.cancel = lambda ref, force=False: log.append(  # type: ignore[attr-defined]
        "cancel" if state["up"] else "cancel without Ray")
    monkeypatch.setitem(sys.modules, "ray", fake)
    planned = run_module.plan_tasks
    monkeypatch.setattr(run_module, "plan_tasks", lambda runs, *a, **k: (
        pending.extend(r.run_id for r in runs), planned(runs, *a, **k))[1])
    zoo = ZooSpec(seeds=(0, 1, 2), data={"name": "digits", "train_fraction": 0.1},
                  arch={"family": "mlp", "width": 4, "depth": 1}, train={"max_epochs": 1})

    def interrupt(_: RunOutcome) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_zoo(zoo, tmp_path / "z", device="cpu", executor="ray", on_outcome=interrupt)
    assert log == ["init", "cancel", "cancel", "shutdown"]


def test_a_zoo_with_nothing_trained_yet_has_the_metric_columns(tmp_path: Path,
                                                                tiny_zoo_toml: Path):
    """Its export had no train_acc, gap, epochs or steps_to_ce columns: the table's layout
    depended on how far the zoo had come."""
    from gengap.zoo import load_zoo_spec

    zoo = load_zoo_spec(tiny_zoo_toml)
    pending = Store.create(tmp_path / "pending", zoo).frame()
    trained = train_zoo(zoo, tmp_path / "trained", device="cpu").frame()
    missing = set(trained.columns) - set(pending.columns)
    assert missing <= {"test_size"}, missing  # what only the data's loading tells
    assert pending[["train_acc", "gap", "steps_to_ce_0.1"]].isna().all().all()
