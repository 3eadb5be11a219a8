"""A zoo killed with SIGKILL mid-way resumes: every run present once, every weight file loads."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from gengap.zoo import Store

SLOW_ZOO = """
name = "resume"
seeds = [0, 1, 2]

[data]
name = "digits"

[arch]
family = "cnn"
width = [8, 16]

[train]
lr = 0.01
max_epochs = 8
target_ce = 0.0
"""


def done_count(db: Path) -> int:
    try:
        with sqlite3.connect(db, timeout=5) as con:
            return con.execute("SELECT COUNT(*) FROM runs WHERE status='done'").fetchone()[0]
    except sqlite3.Error:
        return 0


@pytest.mark.slow
def test_resume_after_kill_minus_nine(tmp_path: Path):
    # One in-process worker here; tests/test_zoo_execution.py kills a 2-worker population zoo.
    workers = 1
    spec = tmp_path / "zoo.toml"
    spec.write_text(SLOW_ZOO)
    out = tmp_path / "zoo"
    command = [sys.executable, "-m", "gengap.cli", "zoo", "train", str(spec), "--out", str(out),
               "--workers", str(workers), "--device", "cpu"]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 300
    while done_count(out / "gengap.sqlite") < 2 and time.time() < deadline:
        assert proc.poll() is None, "the zoo finished before it could be killed"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the whole group: workers die too
    proc.wait()
    assert 2 <= done_count(out / "gengap.sqlite") < 6

    finished = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr
    store = Store(out)
    frame = store.frame()
    assert len(frame) == 6 and frame["run_id"].is_unique
    assert (frame["status"] == "done").all()
    for run_id in frame["run_id"]:
        for which in ("init", "final"):
            assert load_file(str(store.weights_path(run_id, which)))
    leftovers = [p for p in (out / "weights").rglob("*") if ".tmp" in p.name]
    assert not leftovers or all(p.parent.name in set(frame["run_id"]) for p in leftovers)
