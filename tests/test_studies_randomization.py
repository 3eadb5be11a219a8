"""The randomization study at smoke scale: one row per condition, every condition fitted, test
accuracy falling to chance, resuming, the report page and the command."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from gengap.cli.app import app
from gengap.errors import GengapError
from gengap.studies import StudyOptions, run_study, studies

CONDITIONS = ["true labels", "label noise 50%", "label noise 100%", "random labels",
              "shuffled pixels", "random pixels", "gaussian inputs"]


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("study") / "rand"
    return run_study("randomization", out, scale="smoke", device="cpu", population="off")


def test_one_row_per_condition_and_every_condition_fitted(result) -> None:
    table = result.table
    assert list(table["condition"]) == CONDITIONS
    assert (table["runs"] == 1).all()
    assert (table["train_acc"] >= 0.99).all() and table["fitted"].all()


def test_test_accuracy_falls_to_chance(result) -> None:
    by = result.table.set_index("condition")
    chance = by.loc["true labels", "chance"]
    assert chance == pytest.approx(0.1, abs=0.01)  # digits' test split is balanced
    assert by.loc["true labels", "test_acc"] > 0.7
    assert by.loc["shuffled pixels", "test_acc"] > 0.7  # one fixed permutation keeps the task
    for condition in ("random labels", "label noise 100%", "random pixels", "gaussian inputs"):
        assert abs(by.loc[condition, "test_acc"] - chance) < 0.08, condition
    noise = by.loc[["true labels", "label noise 50%", "label noise 100%"], "test_acc"]
    assert noise.is_monotonic_decreasing
    # Random labels take longer to fit than true ones (Zhang et al. Fig. 1b).
    assert by.loc["random labels", "steps"] > by.loc["true labels", "steps"]


def test_training_curves_rise_and_figures_follow_the_table(result) -> None:
    fit, test = result.figures
    assert len(fit.data) == len(CONDITIONS)
    for trace in fit.data:
        assert trace.y[0] < 0.9 and trace.y[-1] >= 0.99
    labels = result.table.dropna(subset=["label_noise"])
    assert list(test.data[0].y) == list(labels.sort_values("label_noise")["test_acc"])


def test_report_and_resume(result) -> None:
    page = (result.folder / "report.html").read_text()
    assert "Zhang et al. 2017" in page and "Plotly.newPlot" in page
    assert result.train_seconds > 0 and result.seconds > 0
    trained = []
    again = studies.get("randomization").run(StudyOptions(
        result.folder, "smoke", device="cpu", population="off", on_outcome=trained.append
    ))
    assert trained == []  # everything was in the folder already
    assert again.table.equals(result.table)


def test_command_prints_the_table_and_the_published_finding(tmp_path: Path) -> None:
    out = tmp_path / "r"
    runner = CliRunner()
    done = runner.invoke(app, ["study", "randomization", "--scale", "smoke", "--out", str(out),
                               "--device", "cpu", "--population", "off"])
    assert done.exit_code == 0, done.output
    assert "random labels" in done.output and "published" in done.output
    assert (out / "report.html").is_file()
    bad = runner.invoke(app, ["study", "randomization", "--scale", "huge", "--out", str(out)])
    assert isinstance(bad.exception, GengapError) and "unknown scale" in str(bad.exception)


def test_a_study_goes_only_into_a_new_empty_or_study_folder(result, tmp_path: Path) -> None:
    """It wrote its zoos and report.html into any folder: a zoo, a PGDL task, the user's."""
    zoo = next(p for p in result.folder.iterdir() if p.is_dir())
    with pytest.raises(GengapError, match="is a zoo folder, not a study's"):
        run_study("randomization", zoo, scale="smoke", device="cpu")
    task = tmp_path / "task"
    task.mkdir()
    (task / "model_configs.json").write_text("{}")
    with pytest.raises(GengapError, match="holds 'model_configs.json', which is no study's"):
        run_study("randomization", task, scale="smoke", device="cpu")
    with pytest.raises(GengapError, match="unknown population mode"):
        run_study("randomization", tmp_path / "new", scale="smoke", population="maybe")
    assert not (tmp_path / "new").exists()
    again = run_study("randomization", result.folder, scale="smoke", device="cpu",
                      population="off", report=False)  # its own folder: resumed
    assert again.runs == result.runs
    # another study took a folder of zoos for its own and replaced its report.html
    report = (result.folder / "report.html").read_bytes()
    with pytest.raises(GengapError, match=r"holds the 'randomization' study, not 'grokking' "
                       r"\(give another folder: its report would be replaced\)"):
        run_study("grokking", result.folder, scale="smoke", device="cpu", population="off")
    assert (result.folder / "report.html").read_bytes() == report
    assert not (result.folder / "grokking").exists()


def _fail_runs(db: Path) -> None:
    """Every run of one zoo recorded as a diverged run is (NaN metrics, no history)."""
    metrics = ('{"train_loss": NaN, "train_acc": NaN, "test_loss": NaN, "test_acc": NaN, '
               '"epochs": 1, "steps": 1, "seconds": 0.01, "converged": false, '
               '"stopped_by": "diverged"}')
    with sqlite3.connect(db) as con:
        con.execute("UPDATE runs SET status = 'failed', reason = 'diverged: training loss is "
                    "nan after epoch 1', metrics = ?, history = '[]'", (metrics,))
    con.close()


def test_failed_runs_are_named_and_their_condition_is_not_fitted(result, tmp_path) -> None:
    """A condition whose runs failed vanished from the table, and the finding said every
    condition fitted; a study whose every run failed was a traceback."""
    folder = tmp_path / "copy"
    shutil.copytree(result.folder, folder)
    _fail_runs(folder / "random_labels" / "gengap.sqlite")
    again = run_study("randomization", folder, scale="smoke", device="cpu", population="off")
    row = again.table.set_index("condition").loc["random labels"]
    assert row["runs"] == 0 and not row["fitted"]
    assert again.found[0].endswith("6 of 7 conditions fitted (≥ 0.99) on every seed")
    assert again.notes == ["1 of 7 runs failed and are left out of the results (random_labels "
                           "seed 0: diverged: training loss is nan after epoch 1)"]
    for zoo in ("labels", "shuffled_pixels", "random_pixels", "gaussian_inputs"):
        _fail_runs(folder / zoo / "gengap.sqlite")
    with pytest.raises(GengapError, match="no run of the study finished: 7 of 7 runs failed "
                                          r"\(first: diverged"):
        run_study("randomization", folder, scale="smoke", device="cpu", population="off")


def test_run_study_reports_each_run_as_it_is_trained(tmp_path) -> None:
    """The command's progress bar ticks on these: a study printed nothing for minutes."""
    trained = []
    result = run_study("randomization", tmp_path / "s", scale="smoke", device="cpu",
                       population="off", report=False, on_outcome=trained.append)
    assert len(trained) == result.runs == len(CONDITIONS)
    assert {outcome.status for outcome in trained} == {"done"}


def test_a_report_path_that_is_no_file_and_bad_workers_stop_before_any_work(tmp_path) -> None:
    """The first trained every run, then failed to write the page; the second left a marked
    folder behind."""
    (tmp_path / "s" / "report.html").mkdir(parents=True)
    with pytest.raises(GengapError, match="report.html: not a file, where the study writes "
                                          "its report"):
        run_study("randomization", tmp_path / "s", scale="smoke", device="cpu",
                  population="off")
    assert [p.name for p in (tmp_path / "s").iterdir()] == ["report.html"]  # nothing trained
    with pytest.raises(GengapError, match="workers"):
        run_study("randomization", tmp_path / "new", scale="smoke", workers=0, device="cpu")
    assert not (tmp_path / "new").exists()


def test_a_study_inside_another_studys_or_a_zoos_folder_is_refused(result, tmp_path) -> None:
    """It was taken, and the outer study then refused its own folder ("holds 'inner', which
    is no study's")."""
    for inner in (result.folder / "inner", result.folder / "labels" / "sub"):
        with pytest.raises(GengapError, match=f"{inner}: inside a (study|zoo)'s folder"):
            run_study("grokking", inner, scale="smoke", device="cpu", population="off")
        assert not inner.exists()


def test_a_condition_with_one_failed_seed_did_not_fit_on_every_seed() -> None:
    from gengap.studies.randomization import randomization_table

    frame = pd.DataFrame({
        "zoo": ["labels"] * 4, "data.label_noise": [0.0, 0.0, 0.5, 0.5],
        "status": ["done", "failed", "done", "done"], "seed": [0, 1, 0, 1],
        "train_acc": [1.0, np.nan, 1.0, 0.995], "test_acc": [0.9, np.nan, 0.5, 0.52],
        "epochs": [3, 1, 4, 4], "steps": [30, 1, 40, 40]})
    table = randomization_table(frame, 0.1).set_index("condition")
    assert list(table["fitted"]) == [False, True]
    assert list(table["runs"]) == [1, 2]
