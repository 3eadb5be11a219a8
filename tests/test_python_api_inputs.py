"""The Python API takes what a researcher has at hand: numpy arrays, folder paths, device
names; and refuses what the commands refuse (worker counts), each with a one-line error."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from gengap.errors import GengapError
from gengap.measures import MeasureContext, compute
from gengap.specs import ArchSpec, RunSpec, TrainSpec, ZooSpec
from gengap.train.population import Population
from gengap.zoo import Store, evaluate_zoo, measure_zoo, train_zoo


def test_numpy_arrays_are_measured_as_tensors():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 6)).astype(np.float32), rng.integers(0, 3, 40)
    from_numpy = compute(MeasureContext(model, None, x, y), ["margin", "cross_entropy"])
    from_torch = compute(MeasureContext(model, None, torch.from_numpy(x), torch.from_numpy(y)),
                         ["margin", "cross_entropy"])
    assert from_numpy == from_torch
    reversed_rows = compute(MeasureContext(model, None, x[::-1], y[::-1]), ["cross_entropy"])
    assert reversed_rows["cross_entropy"] == pytest.approx(from_numpy["cross_entropy"])
    with pytest.raises(GengapError, match="x_train: not an array of numbers") as err:
        MeasureContext(model, None, np.array([{"a": 1}] * 40), y)
    assert len(str(err.value).splitlines()) == 1


def test_zoo_functions_take_a_folder_and_bounded_workers(tmp_path: Path, one_thread):
    zoo = ZooSpec(seeds=(0, 1), data={"name": "digits", "train_fraction": 0.2},
                  arch={"family": "mlp", "width": 4, "depth": 1}, train={"max_epochs": 1})
    out = tmp_path / "z"
    for workers in (0, -3, 1025):
        with pytest.raises(GengapError, match=f"workers must be between 1 and 1024, not "
                                              f"{workers}"):
            train_zoo(zoo, out, workers=workers, device="cpu")
    assert not out.exists()
    train_zoo(zoo, out, device="cpu")
    with pytest.raises(GengapError, match="not -1"):
        measure_zoo(str(out), "params", workers=-1)
    assert measure_zoo(str(out), "params,param_norm", device="cpu") == 2
    by_path = evaluate_zoo(out, metrics="tau")
    pd_equal = by_path.equals(evaluate_zoo(Store(out), metrics=["tau"]))
    assert pd_equal and set(by_path["measure"]) == {"params", "param_norm"}


def test_a_population_takes_a_device_name():
    runs = [RunSpec(arch=ArchSpec(family="mlp", width=4, depth=1), train=TrainSpec(lr=lr))
            for lr in (0.1, 0.2)]
    splits = SimpleNamespace(input_shape=(5,), num_classes=3)
    pop = Population(runs, splits, "cpu")  # type: ignore[arg-type]
    assert pop.device == torch.device("cpu")
    assert pop.forward(torch.randn(7, 5), training=False).shape == (2, 7, 3)


def test_evaluation_functions_name_the_missing_column():
    """Bare KeyErrors and numpy broadcast errors before."""
    from gengap.evaluate import granulated_kendall, kendall
    from gengap.evaluate.predictors import fit_predictor

    frame = pd.DataFrame({"lr": [1, 2, 1, 2], "wd": [0, 0, 1, 1], "m": [0.1, 0.4, 0.2, 0.3],
                          "train_acc": [1.0, 1.0, 0.9, 1.0], "test_acc": [0.9, 0.7, 0.8, 0.8]})
    for call, message in (
        (lambda: granulated_kendall(frame, "nope", "gap", ["lr"]), "no measure column 'nope'"),
        (lambda: granulated_kendall(frame, "m", "gap", ["lr", "depth"]),
         "no hyperparameter column 'depth'"),
        (lambda: fit_predictor(frame, ["m", "nope"], target="gap"), "no feature column 'nope'"),
        (lambda: kendall([1, 2, 3], [1, 3]),
         r"the measure has shape \(3,\) and the target \(2,\)"),
        # arguments in conditional_mi's order (hyperparameters before the target): the
        # target's text was read letter by letter, "no hyperparameter column 'g'"
        (lambda: granulated_kendall(frame, "m", ["lr"], "gap"),
         "hyperparameter names as a list of column names, not the text 'gap'"),
        (lambda: granulated_kendall(frame, "m", ["lr"], ["wd"]),
         r"target: one column name, not \['lr'\]"),
    ):
        with pytest.raises(GengapError, match=message):
            call()
    assert kendall(np.array([[1.0], [2.0], [3.0]]), [1, 3, 2]) == kendall([1, 2, 3], [1, 3, 2])
    # the gap is derived, as ranking_table derives it
    psi, axes = granulated_kendall(frame, "m", "gap", ["lr", "wd"])
    assert axes["lr"] == 1.0 and psi == pytest.approx((1.0 + axes["wd"]) / 2)


def test_a_wide_csv_table_takes_a_column_without_a_fragmentation_warning(tmp_path: Path):
    """`predict apply` on a CSV export (151 columns) printed pandas' PerformanceWarning."""
    import warnings

    from gengap.zoo.evaluation import read_table

    path = tmp_path / "wide.csv"
    pd.DataFrame({f"m{i}": [0.5, 1.5] for i in range(150)}).to_csv(path, index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = read_table(path).assign(zoo="wide")
    assert table.shape == (2, 151)


def test_held_out_inputs_give_the_input_shape():
    """A BatchNorm model with only held-out inputs lost every weight measure from available()."""
    from gengap.measures import available

    torch.manual_seed(0)
    bn = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    bn.eval()
    ctx = MeasureContext(bn, x_heldout=torch.randn(20, 6), second_model=bn)
    assert ctx.input_shape == (6,)
    assert {"disagreement", "path_norm", "prod_of_spec"} <= set(available(ctx))


def test_a_name_given_twice_is_ranked_once():
    """ranking_table ranked a measure named twice twice; the commands once."""
    from gengap.evaluate import ranking_table

    frame = pd.DataFrame({"lr": [1, 2, 1, 2], "wd": [0, 0, 1, 1], "m": [0.1, 0.4, 0.2, 0.3],
                          "k": [0.3, 0.2, 0.1, 0.4], "train_acc": [1.0, 1.0, 0.9, 1.0],
                          "test_acc": [0.9, 0.7, 0.8, 0.8]})
    table = ranking_table(frame, ["m", "k", "m"], "lr,wd,lr", metrics="tau,tau")
    assert list(table["measure"]) == ["m", "k"]
    assert table.equals(ranking_table(frame, ["m", "k"], ["lr", "wd"], metrics=["tau"]))
