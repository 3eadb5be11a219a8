"""Agreement: the disagreement rate on hand-made predictions, the measure on two models, the
seed pairs of a zoo, and measure_zoo storing disagreement for runs that have a seed twin."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from gengap.errors import GengapError
from gengap.measures import MeasureContext, compute
from gengap.measures.agreement import disagreement_rate
from gengap.specs import RunSpec
from gengap.zoo.seed_pairs import seed_partners


def test_disagreement_rate_on_hand_made_predictions() -> None:
    a = torch.tensor([0, 1, 2, 3, 1])
    b = torch.tensor([0, 2, 2, 1, 1])
    assert disagreement_rate(a, b) == pytest.approx(2 / 5)
    assert disagreement_rate(a, a) == 0.0
    with pytest.raises(GengapError):
        disagreement_rate(a, b[:3])


def test_disagreement_measure_compares_argmax_on_held_out_inputs() -> None:
    first = nn.Linear(2, 2, bias=False)
    second = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        first.weight.copy_(torch.eye(2))  # predicts the larger coordinate
        second.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 0.0]]))  # 0 when x0 > 0
    held = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 3.0], [-1.0, -2.0]])
    ctx = MeasureContext(first, second_model=second, x_heldout=held, device="cpu")
    # first predicts 0, 1, 1, 0; second 0, 0 (a tie goes to the first class), 0, 1
    assert compute(ctx, ["disagreement"])["disagreement"] == pytest.approx(0.75)
    with pytest.raises(GengapError, match="second run"):
        compute(MeasureContext(first, device="cpu"), ["disagreement"])


def test_seed_partners_pair_runs_that_differ_only_in_seed() -> None:
    runs = [RunSpec(seed=s) for s in (2, 0, 1)] + [RunSpec(seed=0, train={"lr": 0.2})]
    partners = seed_partners(runs)
    assert {r.seed: partners[r.run_id].seed for r in runs[:3]} == {0: 1, 1: 2, 2: 0}
    assert runs[3].run_id not in partners  # alone in its group


def mlp_spec(folder: Path, seeds: list[int], epochs: int) -> Path:
    """A zoo spec of two learning rates of a tiny MLP on digits, for each of ``seeds``."""
    spec = folder / "mlp.toml"
    spec.write_text(
        f'name = "mlp"\nseeds = {seeds}\n[data]\nname = "digits"\ntrain_fraction = 0.2\n'
        f'[arch]\nfamily = "mlp"\nwidth = 8\ndepth = 1\n[train]\nmax_epochs = {epochs}\n'
        'lr = [0.05, 0.1]\n'
    )
    return spec


@pytest.mark.slow
def test_measure_zoo_stores_disagreement_for_seed_twins(tmp_path) -> None:
    from gengap.data import load
    from gengap.zoo import Store, load_zoo_spec, measure_zoo, train_zoo
    from gengap.zoo.measure import load_model

    store = train_zoo(load_zoo_spec(mlp_spec(tmp_path, seeds=[0, 1], epochs=2)),
                      tmp_path / "zoo", device="cpu")
    left_out: dict[str, int] = {}
    measure_zoo(store, "disagreement", device="cpu", left_out=left_out)
    assert left_out == {}
    frame = Store(tmp_path / "zoo").frame()
    assert frame["disagreement"].notna().all()
    runs = {r.run_id: r for r in store.runs(status="done")}
    partners = seed_partners(list(runs.values()))
    run_id = frame["run_id"][0]
    splits = load(runs[run_id].data)
    one = load_model(store, runs[run_id], splits).eval()
    two = load_model(store, partners[run_id], splits).eval()
    with torch.no_grad():
        expected = disagreement_rate(one(splits.x_test).argmax(1), two(splits.x_test).argmax(1))
    assert float(frame["disagreement"][0]) == pytest.approx(expected)


def test_a_run_without_a_seed_twin_is_counted_as_waiting(tmp_path) -> None:
    """`gengap measure ZOO --measures agreement` on a one-seed zoo said "measured 0 runs" and
    nothing else."""
    from typer.testing import CliRunner

    from gengap.cli.app import app
    from gengap.zoo import load_zoo_spec, measure_zoo, train_zoo

    store = train_zoo(load_zoo_spec(mlp_spec(tmp_path, seeds=[0], epochs=1)), tmp_path / "zoo",
                      device="cpu")
    left_out: dict[str, int] = {}
    assert measure_zoo(store, "agreement,params", device="cpu", left_out=left_out) == 2
    assert left_out == {"disagreement": 2}
    result = CliRunner().invoke(app, ["measure", str(tmp_path / "zoo"), "--measures",
                                      "agreement", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "disagreement: left out on 2 runs that lack a finished seed twin" in result.output


def test_the_twin_is_the_next_seed_whatever_had_finished(tmp_path) -> None:
    """With seeds 0, 1, 2 and seed 2 still pending, seed 1 was paired with seed 0 and kept
    that value once seed 2 was done: the result depended on when `measure` ran."""
    import sqlite3

    from gengap.zoo import Store, load_zoo_spec, measure_zoo, train_zoo

    spec = load_zoo_spec(mlp_spec(tmp_path, seeds=[0, 1, 2], epochs=1))
    train_zoo(spec, tmp_path / "zoo", device="cpu")
    shutil.copytree(tmp_path / "zoo", tmp_path / "whole")
    shutil.copytree(tmp_path / "zoo", tmp_path / "failed")
    by_seed = {run.seed: run.run_id for run in Store(tmp_path / "zoo").runs()
               if run.train.lr == 0.05}
    with sqlite3.connect(tmp_path / "zoo" / "gengap.sqlite") as db:  # seed 2 not trained yet
        db.execute("UPDATE runs SET status = 'pending' WHERE run_id = ?", (by_seed[2],))
    left_out: dict[str, int] = {}
    measure_zoo(Store(tmp_path / "zoo"), "disagreement", device="cpu", left_out=left_out)
    assert left_out == {"disagreement": 1}  # seed 1 waits for seed 2
    with sqlite3.connect(tmp_path / "zoo" / "gengap.sqlite") as db:
        db.execute("UPDATE runs SET status = 'done' WHERE run_id = ?", (by_seed[2],))
    measure_zoo(Store(tmp_path / "zoo"), "disagreement", device="cpu")
    measure_zoo(Store(tmp_path / "whole"), "disagreement", device="cpu")
    in_turns = Store(tmp_path / "zoo").frame().set_index("run_id")["disagreement"]
    at_once = Store(tmp_path / "whole").frame().set_index("run_id")["disagreement"]
    pd.testing.assert_series_equal(in_turns.sort_index(), at_once.sort_index())
    # a failed run is no one's twin: seed 1 pairs with seed 0 (cyclically) instead
    with sqlite3.connect(tmp_path / "failed" / "gengap.sqlite") as db:
        db.execute("UPDATE runs SET status = 'failed' WHERE run_id = ?", (by_seed[2],))
    left_out.clear()
    measure_zoo(Store(tmp_path / "failed"), "disagreement", device="cpu", left_out=left_out)
    measured = Store(tmp_path / "failed").frame().set_index("run_id")["disagreement"]
    assert left_out == {} and np.isfinite(measured[by_seed[1]])
