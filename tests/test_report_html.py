"""The report's content on a zoo written straight into a store: sections, numbers, notes for
what could not be computed, the `gengap report` command and its errors."""

from __future__ import annotations

import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from plotly.offline import get_plotlyjs
from scipy.stats import kendalltau

from gengap.errors import GengapError
from gengap.report import ReportData, gather, render, write_report
from gengap.report.data import default_curve_runs, resolve_runs
from gengap.report.sections.granulated import heatmap
from gengap.report.sections.scatter import measure_scatter
from gengap.specs import DataSpec, ZooSpec
from gengap.zoo import Store

SECTIONS = ("summary", "ranking", "granulated", "scatter", "curves", "predictor")
FAILED_REASON = "diverged: training loss is nan at step 3"


def make_store(root: Path, measured: bool = True, fail_one: bool = True,
               data: DataSpec | None = None) -> Store:
    """A 2x2 grid (width x lr) with two seeds (on ``data``, default digits: records only,
    nothing is trained); the gap grows with width, lr and seed, so ``good`` ranks it
    perfectly and ``anti`` in reverse; one run failed."""
    zoo = ZooSpec(name="synthetic", seeds=(0, 1), data=data or DataSpec(),
                  axes={"arch.width": (4, 8), "train.lr": (0.01, 0.1)})
    store = Store.create(root, zoo)
    rng = np.random.default_rng(0)
    for i, run in enumerate(zoo.runs()):
        if fail_one and i == len(zoo.runs()) - 1:
            store.record(run.run_id, "failed", {}, [], reason=FAILED_REASON)
            continue
        gap = 0.02 * (run.arch.width == 8) + 0.05 * (run.train.lr == 0.1) + 0.003 * run.seed
        train_acc = 0.9 + gap / 2
        history = [{"epoch": e, "steps": 10 * e, "train_loss": 1.0 / e, "train_acc": train_acc,
                    "test_loss": 1.2 / e, "test_acc": train_acc - gap} for e in (1, 2, 3)]
        store.record(run.run_id, "done", {**history[-1], "epochs": 3}, history)
        if measured:
            store.put_measures(run.run_id, {"good": (10 * gap + 1, 0.0), "anti": (-gap, 0.0),
                                            "noise": (float(rng.normal()), 0.0)})
    return store


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    return make_store(tmp_path_factory.mktemp("report") / "zoo")


@pytest.fixture(scope="module")
def data(store: Store) -> ReportData:
    """The store gathered and evaluated once for the tests that only read it."""
    return gather(store, bootstrap=200)


class Links(HTMLParser):
    """Every src and href of the page's elements (script text is not parsed as tags)."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [v or "" for k, v in attrs if k in ("src", "href")]


def test_a_report_of_a_zoo_given_by_its_folder(store: Store, tmp_path: Path):
    """As measure_zoo and evaluate_zoo take one: it was an AttributeError."""
    out = tmp_path / "by_folder.html"
    data = write_report(str(store.root), out, bootstrap=0)
    assert out.is_file() and len(data.frame) == len(store.frame())


def test_the_page_has_every_section_and_needs_no_network(store: Store, tmp_path: Path):
    out = tmp_path / "report.html"
    data = write_report(store, out, bootstrap=200)
    page = out.read_text()
    for section in SECTIONS:
        assert f'<section id="{section}">' in page
    links = Links()
    links.feed(page)
    external = [u for u in links.urls if not u.startswith(("#", "data:"))]
    assert external == [], external
    assert page.count(get_plotlyjs()[:300]) == 1  # the library inlined once, not per figure
    # ranking, heatmap, 3 scatters (3 measures), curves, predictor
    assert page.count('class="plotly-graph-div"') == page.count("Plotly.newPlot(") == 7
    assert sum(u.startswith("data:image/png;base64,") for u in links.urls) == 2  # static
    assert data.evaluation is not None and data.evaluation.ranking is not None


def test_numbers_are_the_evaluation_packages(data: ReportData):
    done = data.done
    assert len(done) == 7 and set(data.measures) == {"good", "anti", "noise"}
    ranking = data.evaluation.ranking.set_index("measure")
    for name in data.measures:
        expected = kendalltau(done[name], done["gap"], variant="b").statistic
        assert ranking.loc[name, "tau"] == pytest.approx(expected)
    assert ranking.loc["good", "tau"] == pytest.approx(1.0)
    assert ranking.loc["anti", "psi[arch.width]"] == pytest.approx(-1.0)
    assert ranking.loc["good", "tau_low"] <= 1.0 <= ranking.loc["good", "tau_high"] + 1e-12
    assert data.evaluation.ranking["measure"].iloc[0] == "good"  # best first
    page = render(data)
    assert re.search(r">1\.000 <span class=\"ci\">\[", page)  # the value with its interval


def test_heatmap_shows_the_psi_terms_of_the_ranking(data: ReportData):
    ranking = data.evaluation.ranking
    columns = {c: c[4:-1] for c in ranking.columns if c.startswith("psi[")}
    fig = heatmap(ranking, columns)
    z = np.asarray(fig.data[0].z, dtype=float)
    rows = list(fig.data[0].y)
    assert list(fig.data[0].x) == ["width", "lr", "Ψ"]
    for measure in ranking["measure"]:
        expected = ranking.set_index("measure").loc[measure, [*columns, "psi"]].to_numpy(float)
        np.testing.assert_allclose(z[rows.index(measure)], expected)


def test_a_heatmap_with_every_cell_undefined_is_a_note(data: ReportData):
    """One finished run per setting: the section drew an empty grid and said nothing."""
    from dataclasses import replace

    from gengap.report.sections.granulated import granulated_section

    blank = data.evaluation.ranking.copy()
    for column in [c for c in blank.columns if c.startswith("psi")]:
        blank[column] = np.nan
    section = granulated_section(replace(data, evaluation=replace(data.evaluation,
                                                                  ranking=blank)))
    html = section.body
    assert "no group has two runs that differ in one hyperparameter only" in html
    assert "plotly" not in html.lower()


def test_scatter_hover_names_each_runs_hyperparameters(data: ReportData):
    fig = measure_scatter(data, "good")
    shown = [t for trace in fig.data if trace.visible for t in trace.text]
    assert len(shown) == 7
    assert all("width = " in t and "lr = " in t and "seed = " in t for t in shown)
    menu = fig.layout.updatemenus[0].buttons
    assert [b.label for b in menu] == ["colour by width", "colour by lr"]


def test_failed_runs_and_what_was_not_computed_are_shown(store: Store):
    page = render(gather(store, bootstrap=0))
    assert FAILED_REASON in page and "Failed runs (1)" in page
    assert "intervals: not computed: no bootstrap resamples" in page


def test_robust_sign_error_counts_the_test_sets_as_evaluate_does(data: ReportData):
    """The runs record no test-set size: it is counted from their data spec (digits: 450 of
    1,797 held out), as `gengap evaluate` counts it, and the robust sign-error is computed."""
    notes = data.evaluation.notes.get("robust", [])
    assert not any("sizes are unknown" in note for note in notes)
    assert "robust_envs" in data.evaluation.ranking  # (7 runs keep no environment)
    from gengap.zoo.evaluation import with_test_sizes

    store = Store(Path(data.source))
    assert set(with_test_sizes(store, data.done)["test_size"]) == {450}
    store.close()


def test_recorded_test_sizes_are_kept_and_only_missing_ones_counted(tmp_path: Path):
    from gengap.zoo.evaluation import with_test_sizes

    store = make_store(tmp_path / "zoo")
    done = store.frame().query("status == 'done'")
    done = done.assign(test_size=[123.0] + [float("nan")] * (len(done) - 1))  # older runs
    assert with_test_sizes(store, done)["test_size"].tolist() == [123] + [450] * (len(done) - 1)


def test_robust_sign_error_of_data_not_loadable_here_is_a_note(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.delenv("GENGAP_DATA", raising=False)  # the file: nowhere to be found
    store = make_store(tmp_path / "zoo", data=DataSpec(name="npz", options={"file": "d.npz"}))
    page = render(gather(store, bootstrap=0))
    assert "robust: not computed: the runs&#x27; test-set sizes are unknown" in page
    assert "tau" in gather(store, bootstrap=0).evaluation.ranking  # the rest is computed
    # given the data folder (`gengap report --data-dir`), the sizes are counted
    rng = np.random.default_rng(0)
    (tmp_path / "data").mkdir()
    np.savez(tmp_path / "data" / "d.npz", x=rng.normal(size=(40, 3)), y=np.arange(40) % 2,
             x_test=rng.normal(size=(17, 3)), y_test=np.arange(17) % 2)
    counted = gather(store, bootstrap=0, data_dir=tmp_path / "data").evaluation
    assert not any("sizes are unknown" in note for note in counted.notes.get("robust", []))
    assert "robust_envs" in counted.ranking


def test_a_zoo_without_measures_still_gets_its_report(tmp_path: Path):
    store = make_store(tmp_path / "zoo", measured=False)
    data = gather(store)
    page = render(data)
    assert page.count("not computed: no measures stored yet") >= 1
    # the hyperparameters-only baseline needs no measure (it was "not computed" too)
    scores = data.evaluation.predictor_scores
    assert scores["features"].tolist() == ["hyperparameters"]
    assert "feature set &#x27;measures&#x27; is empty" in page
    assert '<section id="curves">' in page and "Plotly.newPlot(" in page


def test_a_zoo_with_nothing_trained_yet(tmp_path: Path):
    zoo = ZooSpec(name="empty", axes={"arch.width": (4, 8)})
    page = render(gather(Store.create(tmp_path / "zoo", zoo)))
    assert "no finished runs yet" in page


def store_with_metrics(root: Path, metrics: dict[str, float | str]) -> Store:
    """A 2x2 grid, every run done with ``metrics`` and one measure."""
    zoo = ZooSpec(name="odd", seeds=(0,), axes={"arch.width": (4, 8), "train.lr": (0.01, 0.1)})
    store = Store.create(root, zoo)
    for i, run in enumerate(zoo.runs()):
        store.record(run.run_id, "done", metrics, [])
        store.put_measures(run.run_id, {"m": (float(i), 0.0)})
    return store


def test_an_all_nan_metric_is_left_out_of_the_histograms(tmp_path: Path):
    # no test accuracy recorded (NaN in every run): the histograms once indexed an empty array
    store = store_with_metrics(tmp_path / "zoo", {"train_acc": 0.9, "test_acc": float("nan")})
    page = render(gather(store, bootstrap=0))
    assert "histograms of accuracy and gap" in page  # train accuracy is still drawn
    assert "test accuracy: no finite value over the finished runs, not drawn" in page
    assert "gap (train − test): no finite value" in page


def test_a_zoo_without_accuracies_gets_its_zoo_section_and_notes(tmp_path: Path):
    # a PGDL import without reference metrics: no gap to rank against, the rest still shows
    store = store_with_metrics(tmp_path / "zoo", {"pgdl_model": "model_0"})
    page = render(gather(store, bootstrap=0))
    assert '<section id="summary">' in page and "Failed runs" not in page
    assert "no train or test accuracy: no histograms" in page
    assert "no finished runs yet" not in page
    assert page.count("not computed: the finished runs have no gap") >= 3
    with pytest.raises(GengapError, match="unknown target 'nonsense'"):
        gather(store, target="nonsense")  # a misspelt target is still an error


def test_curve_runs_span_the_target_and_prefixes_resolve(data: ReportData):
    picked = default_curve_runs(data, 3)
    done = data.done.set_index("run_id")["gap"]
    assert done[picked[0]] == done.min() and done[picked[-1]] == done.max()
    run_id = data.done["run_id"].iloc[0]
    assert resolve_runs(data.frame, [run_id[:6]]) == [run_id]
    with pytest.raises(GengapError, match="no run with that id"):
        resolve_runs(data.frame, ["zzzz"])


def test_the_report_package_does_not_import_torch():
    code = "import sys, gengap.report.build; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "False", result.stderr


def gengap(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gengap.cli", *args], capture_output=True,
                          text=True, timeout=300)


@pytest.mark.slow
def test_report_command_writes_the_page_and_prints_tables(store: Store, tmp_path: Path):
    out = tmp_path / "page.html"
    done = gengap("report", str(store.root), "-o", str(out), "--bootstrap", "100",
                  "--test-size", "450")
    assert done.returncode == 0, done.stderr
    assert out.is_file() and "best measures against gap" in done.stdout
    assert f"wrote the report to {out}" in done.stdout
    assert "sign-error mean" in out.read_text()  # --test-size turns the robust metric on


def test_report_command_refuses_bad_input_in_one_line(store: Store):
    result = gengap("report", str(store.root), "--runs", "zzzz")
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0] == (
        "gengap: error: Invalid value for '--runs': zzzz: no run with that id (or id prefix) in "
        "the zoo (see: gengap report --help)"), result.stderr
    for empty in ("", ","):  # taken for "no choice" before: the default runs were drawn
        result = gengap("report", str(store.root), "--runs", empty)
        assert result.returncode == 2 and result.stderr.strip().splitlines() == [
            f"gengap: error: Invalid value for '--runs': no run named in {empty!r} "
            "(comma-separated run ids or prefixes) (see: gengap report --help)"], result.stderr


@pytest.mark.parametrize("name", ["gengap.sqlite", "results.csv"])
def test_report_command_writes_only_html(tmp_path: Path, name: str):
    # -o ZOO/gengap.sqlite once replaced the zoo's own database with the page
    store = make_store(tmp_path / "zoo")
    victim = store.root / name
    if not victim.exists():
        victim.write_text("run_id,gap\n")
    before = victim.read_bytes()
    result = gengap("report", str(store.root), "-o", str(victim), "--bootstrap", "0")
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"{victim}: write .html or .htm" in lines[0], result.stderr
    if name == "gengap.sqlite":  # opening the store touches its header: read it back instead
        assert len(Store(store.root).frame()) == 8
    else:
        assert victim.read_bytes() == before


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_report_command_names_a_place_it_cannot_write(store: Store):
    result = gengap("report", str(store.root), "-o", "/proc/x.html", "--bootstrap", "0")
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    # refused by the command's check of -o (before the report's own): "cannot write (...)"
    assert len(lines) == 1 and "/proc/x.html: cannot write" in lines[0], result.stderr


def test_a_failed_write_keeps_the_old_report_and_leaves_no_temporary_file(
        store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    out = tmp_path / "report.html"
    out.write_text("the old report")

    def disk_full(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("gengap.atomic_write.os.replace", disk_full)
    with pytest.raises(GengapError, match=re.escape(f"{out}: cannot write the report (No space")):
        write_report(store, out, bootstrap=0)
    assert out.read_text() == "the old report"
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]


@pytest.mark.parametrize("kwargs, fragment", [
    ({"out": "TMP"}, "is a folder"),
    ({"out": "TMP/missing/report.html"}, "no such folder for the report"),
    ({"out": "TMP/r.csv"}, "r.csv: write .html or .htm"),
    ({"target": "nonsense"}, "unknown target 'nonsense'"),
])
def test_bad_arguments_are_one_clear_error(store: Store, tmp_path: Path, kwargs, fragment):
    kwargs = {"out": tmp_path / "r.html", **kwargs}
    kwargs["out"] = Path(str(kwargs["out"]).replace("TMP", str(tmp_path)))
    with pytest.raises(GengapError, match=re.escape(fragment)):
        write_report(store, **kwargs)
    assert not (tmp_path / "r.html").exists()
    assert not list(tmp_path.glob(".r.*tmp*"))  # nor its temporary file


def test_the_report_notes_which_measures_come_last_once_under_the_ranking():
    # the ranking table's own notes were dropped, and the CMI and robust tables repeated them
    from gengap.report.evaluation import evaluate_frame

    rng = np.random.default_rng(0)
    done = pd.DataFrame({"h": np.arange(16) % 4, "seed": np.arange(16) // 4,
                         "gap": rng.random(16), "run_id": [str(i) for i in range(16)],
                         "train_acc": 1.0, "test_acc": rng.random(16)})
    done["good"] = done["gap"] + rng.normal(0, 0.1, 16)
    done["few"] = np.where(np.arange(16) < 3, done["gap"], np.nan)
    result = evaluate_frame(done, ["good", "few"], ["h"], bootstrap=0, test_size=1000)
    note = "ranked after the others: few (a value on fewer than 8 of the 16 networks)"
    assert list(result.ranking["measure"]) == ["good", "few"]
    assert [part for part, texts in result.notes.items() if note in texts] == ["ranking"]


def test_the_words_fit_the_counts(store: Store):
    """"1 runs", and a caption about the default choice under curves the user chose."""
    from gengap.number_format import counted
    from gengap.report.sections.curves import curves_section

    assert (counted(1, "run"), counted(0, "run"), counted(2, "seed")) == (
        "1 run", "0 runs", "2 seeds")
    done = store.frame().query("status == 'done'")["run_id"].iloc[0]
    chosen = curves_section(gather(store, curve_runs=[done], evaluate=False)).body
    assert "1 run (as chosen with <code>--runs</code>)" in chosen
    default = curves_section(gather(store, evaluate=False)).body
    assert "those with the smallest, the largest" in default
