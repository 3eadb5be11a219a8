"""A zoo records the arithmetic of its Monte Carlo measures' passes (bfloat16 or float32, see
gengap.measures.precision) beside their values; an explicit --precision recomputes the values
stored in the other one, or stored before gengap kept it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from gengap.measures import measures
from gengap.specs import MeasureOptions
from gengap.zoo import Store, Zoo, load_zoo_spec, measure_zoo, train_zoo
from gengap.zoo.measure import missing_measures
from gengap.zoo.store import DB_NAME

QUICK = {"mc_draws": 2, "search_depth": 4, "mc_max_rounds": 1}  # a coarse σ′, soon found


@pytest.fixture
def trained(tmp_path: Path) -> Store:
    """Two small MLPs trained far enough above chance that their σ′ searches run."""
    spec = tmp_path / "zoo.toml"
    spec.write_text('name = "mc"\n[data]\nname = "digits"\ntrain_fraction = 0.2\n'
                    '[arch]\nfamily = "mlp"\nwidth = 8\ndepth = 1\n'
                    '[train]\nmax_epochs = 15\noptimizer = "adam"\nlr = [0.01, 0.02]\n')
    store = train_zoo(load_zoo_spec(spec), tmp_path / "zoo", device="cpu")
    assert (store.frame()["train_acc"] > 0.5).all()
    return store


def measure(store: Store, precision: str) -> int:
    return measure_zoo(store, "pacbayes_sigma,params", device="cpu",
                       options=MeasureOptions(precision=precision, **QUICK))


def arithmetic_of(store: Store, name: str) -> list[str | None]:
    return [stored[name] for stored in store.measured().values()]


def test_values_keep_their_arithmetic_and_an_explicit_precision_recomputes(trained: Store):
    store = trained
    assert measure(store, "bfloat16") == 2
    assert arithmetic_of(store, "pacbayes_sigma") == ["bfloat16", "bfloat16"]
    assert arithmetic_of(store, "params") == [None, None]  # no Monte Carlo passes
    assert Zoo(store.root).frame()["monte_carlo_arithmetic"].tolist() == ["bfloat16"] * 2

    assert measure(store, "auto") == 0  # auto takes what is stored
    assert measure(store, "float32") == 2  # the other arithmetic: recomputed, params not
    assert arithmetic_of(store, "pacbayes_sigma") == ["float32", "float32"]
    assert store.frame()["monte_carlo_arithmetic"].tolist() == ["float32"] * 2
    assert store.frame()["pacbayes_sigma"].notna().all()
    assert measure(store, "float32") == 0


def test_a_store_made_before_the_record_reads_and_gains_it(trained: Store):
    store = trained
    run = store.runs()[0].run_id
    store.close()
    with sqlite3.connect(trained.root / DB_NAME) as db:  # the tables earlier gengaps made
        db.execute("DROP TABLE measure_arithmetic")
        db.executemany("INSERT INTO measures VALUES (?, ?, 0.5, 1.0)",
                       [(run, "pacbayes_sigma"), (run, "params")])
    db.close()
    old = Store(trained.root)
    assert old.measured() == {run: {"pacbayes_sigma": None, "params": None}}
    shown = old.frame().set_index("run_id")["monte_carlo_arithmetic"]
    assert shown[run] == "unknown" and shown.drop(run).isna().all()
    assert measure(old, "auto") == 1  # the other run lacks σ′; the stored one stands
    assert old.measured()[run]["pacbayes_sigma"] is None
    assert measure(old, "float32") == 1  # of unknown arithmetic: recomputed
    assert arithmetic_of(old, "pacbayes_sigma") == ["float32", "float32"]


def test_a_value_written_without_its_record_is_of_unknown_arithmetic(trained: Store):
    # as an earlier gengap writes: the value changes, the record stays behind, unmatched
    store = trained
    assert measure(store, "float32") == 2
    run = store.runs()[0].run_id
    with sqlite3.connect(trained.root / DB_NAME) as db:
        db.execute("UPDATE measures SET value = value * 2 WHERE run_id = ? AND name = ?",
                   (run, "pacbayes_sigma"))
    db.close()
    assert store.measured()[run]["pacbayes_sigma"] is None
    assert store.frame().set_index("run_id")["monte_carlo_arithmetic"].to_dict() == {
        r.run_id: "unknown" if r.run_id == run else "float32" for r in store.runs()}
    assert measure(store, "float32") == 1
    assert arithmetic_of(store, "pacbayes_sigma") == ["float32", "float32"]


def test_which_stored_values_an_explicit_precision_takes_again():
    monte_carlo = [m for m in measures if measures.get(m).monte_carlo]
    assert "module_criticality" in monte_carlo and "sharpness_mag_flatness" in monte_carlo
    assert len(monte_carlo) == 17 and "hessian_trace" not in monte_carlo
    have = {"pacbayes_sigma": "bfloat16", "sharpness_init": "float64", "margin": None,
            "module_criticality": None}
    wanted = ["pacbayes_sigma", "sharpness_init", "margin", "module_criticality"]
    assert missing_measures(wanted, have, "auto") == []
    assert missing_measures(wanted, have, "bfloat16") == ["module_criticality"]
    # a float64 model's passes stay in float64 whatever is asked: nothing to redo
    assert missing_measures(wanted, have, "float32") == ["pacbayes_sigma", "module_criticality"]
