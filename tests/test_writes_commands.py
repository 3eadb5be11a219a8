"""The commands' output files written whole or not at all: ``gengap measure FILE --out`` and
``gengap pgdl score --out``. A write that fails midway keeps the older file and leaves no
temporary file, in one line naming the file; a place that takes no file is refused before the
work."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from safetensors.torch import save_file
from typer.testing import CliRunner

from gengap.cli.app import app
from gengap.data import load
from gengap.errors import GengapError
from gengap.models import build_for
from gengap.specs import ArchSpec, DataSpec

runner = CliRunner()
TOY = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "pgdl-toy"
DISK_FULL = "No space left on device"


@pytest.fixture
def weights(tmp_path: Path) -> Path:
    model = build_for(ArchSpec(family="mlp", width=8, depth=1), load(DataSpec(name="digits")))
    path = tmp_path / "final.safetensors"
    save_file(model.state_dict(), str(path))
    return path


def measure(weights: Path, out: Path):
    return runner.invoke(app, ["measure", str(weights), "--arch", "family=mlp,width=8,depth=1",
                               "--data", "digits", "--measures", "param_norm", "--device",
                               "cpu", "--out", str(out)])


def assert_refused(result, out: Path) -> None:
    assert isinstance(result.exception, GengapError), result.output
    text = str(result.exception)
    assert "\n" not in text and text.startswith(f"{out}: cannot write"), text


def temporary_files(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if ".tmp" in p.name]


def disk_full_midway(monkeypatch: pytest.MonkeyPatch, out: Path) -> None:
    """``Path.write_text`` of ``out`` (or of its temporary file) writes half, then finds the
    disk full; the empty trial write before the work still succeeds."""
    write_text = Path.write_text

    def half_then_full(self: Path, data: str, *args, **kwargs):
        if out.name not in self.name or not data:
            return write_text(self, data, *args, **kwargs)
        write_text(self, data[: len(data) // 2], *args, **kwargs)
        raise OSError(28, DISK_FULL)

    monkeypatch.setattr(Path, "write_text", half_then_full)


def test_measure_out_json_that_fails_midway_keeps_the_old_file(
        weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    out = tmp_path / "values.json"
    out.write_text('{"param_norm": 1.0}')
    disk_full_midway(monkeypatch, out)
    assert_refused(measure(weights, out), out)
    assert json.loads(out.read_text()) == {"param_norm": 1.0}
    assert temporary_files(tmp_path) == []
    monkeypatch.undo()
    assert measure(weights, out).exit_code == 0
    assert "param_norm" in json.loads(out.read_text())


def test_measure_out_csv_that_fails_midway_keeps_the_old_file(
        weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    out = tmp_path / "values.csv"
    out.write_text("param_norm\n1.0\n")
    to_csv = pd.DataFrame.to_csv

    def half_then_full(self, path, *args, **kwargs):
        Path(path).write_text("param_no")
        raise OSError(28, DISK_FULL)

    monkeypatch.setattr(pd.DataFrame, "to_csv", half_then_full)
    assert_refused(measure(weights, out), out)
    assert out.read_text() == "param_norm\n1.0\n" and temporary_files(tmp_path) == []
    monkeypatch.setattr(pd.DataFrame, "to_csv", to_csv)
    assert measure(weights, out).exit_code == 0
    assert list(pd.read_csv(out).columns) == ["param_norm"]


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_measure_out_where_no_file_goes_is_refused_before_measuring(weights: Path):
    out = Path("/proc/gengap-values.json")  # root passes os.access there
    result = measure(weights, out)
    assert_refused(result, out)
    assert "measures of" not in result.output  # nothing was measured


def test_pgdl_score_out_that_fails_midway_keeps_the_old_scores(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    if not TOY.is_dir():
        pytest.skip(f"shared fixtures not found at {TOY}")
    out = tmp_path / "scores.txt"
    out.write_text("the old scores\n")
    disk_full_midway(monkeypatch, out)
    result = runner.invoke(app, ["pgdl", "score", "--reference", str(TOY), "--predictions",
                                 str(TOY / "sample_submission.predict"), "--out", str(out)])
    assert_refused(result, out)
    assert out.read_text() == "the old scores\n" and temporary_files(tmp_path) == []


def test_an_output_folder_that_takes_no_file_is_refused_before_the_work():
    """os.access said yes to root for /proc, so `pgdl predict --out` failed after its work."""
    from gengap.cli.outputs import output_folder

    with pytest.raises(GengapError, match=r"^/proc: the folder takes no file \(.+\)$"):
        output_folder(Path("/proc"))
