"""MeasureContext checks its arguments (gengap.measures.context_checks): bad labels, inputs,
models and batch sizes are one-line errors before any measure runs, where they used to give
deep tracebacks or plausible wrong numbers; float64/float16 models and wrapped models are
measured; a model without Linear/Conv layers gets NaN weight measures, not 1 or 0."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from gengap.errors import GengapError
from gengap.measures import MeasureContext, compute, profile

pytestmark = pytest.mark.usefixtures("one_thread")


def mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 3))


def data(n: int = 60) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return torch.randn(n, 10, generator=gen), torch.randint(0, 3, (n,), generator=gen)


def refused(match: str, *args, **kwargs) -> str:
    with pytest.raises(GengapError) as err:
        MeasureContext(*args, device="cpu", **kwargs)
    text = str(err.value)
    assert "\n" not in text and match in text, text
    return text


def test_labels_that_do_not_fit_the_inputs_or_the_model_are_refused():
    x, y = data()
    refused("x_train has 60 examples but y_train 50 labels", mlp(), None, x, y[:50])
    refused("one class index per example, shape (N,), not (60, 1)", mlp(), None, x, y[:, None])
    refused("integer class indices, not torch.float32", mlp(), None, x, y.float())
    refused("y_train holds class 5, but the model has 3 outputs", mlp(), None, x,
            torch.where(y == 0, 5, y))
    refused("y_train holds class -1", mlp(), None, x, y - 1)
    refused("the training set (x_train, y_train) is empty", mlp(), None, x[:0], y[:0])
    # integer labels of any width are class indices
    ctx = MeasureContext(mlp(), None, x, y.to(torch.int32), device="cpu")
    assert ctx.y_train.dtype == torch.int64
    assert math.isfinite(compute(ctx, ["cross_entropy"])["cross_entropy"])


def test_inputs_and_outputs_the_measures_cannot_use_are_refused():
    x, y = data()
    refused("the model cannot take x_train's inputs of shape (12,) and dtype float32", mlp(),
            None, torch.randn(60, 12), y)
    refused("of shape (10,) and dtype int64", mlp(), None, x.long(), y)  # the dtype at fault
    x_nan = x.clone()
    x_nan[7, 3] = float("nan")
    refused("x_train: example 7 holds NaN or inf", mlp(), None, x_nan, y)

    class Pair(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = mlp()

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            out = self.net(x)
            return out, out

    refused("one tensor of class logits, not a tuple", Pair(), None, x, y)

    class Centers(nn.Module):  # x -= 1 in its forward: the caller's batch changes
        def __init__(self) -> None:
            super().__init__()
            self.net = mlp()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x.sub_(1.0))

    before = x.clone()
    refused("the model changes its input in place (its forward wrote into the batch it was "
            "given)", Centers(), None, x, y)
    assert torch.equal(x, before)  # the check's forward ran on a copy
    refused("classes at least 2; it returned shape (2, 1)",
            nn.Sequential(nn.Linear(10, 1)), None, x, torch.zeros(60, dtype=torch.long))
    refused("batch_size must be at least 1, not 0", mlp(), None, x, y, batch_size=0)
    bn = nn.Sequential(nn.Linear(10, 4), nn.BatchNorm1d(4, track_running_stats=False),
                       nn.Linear(4, 3))
    refused("module '1' is a BatchNorm without running statistics", bn, None, x, y)
    refused("x_heldout's inputs have shape (4,), the training inputs (10,)", mlp(), None, x,
            y, second_model=mlp(), x_heldout=torch.randn(5, 4))


def test_models_that_are_not_the_same_architecture_or_diverged_are_refused():
    x, y = data()
    wider = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 3))
    refused("init_model is not the model's architecture: it has 0.weight of shape (32, 10); "
            "the model's is (16, 10)", mlp(), wider, x, y)
    refused("second_model is not the model's architecture: it lacks 2.weight",
            mlp(), None, x, y, second_model=nn.Sequential(nn.Linear(10, 16)))
    broken = mlp()
    with torch.no_grad():
        broken[2].weight[0, 0] = float("inf")
    refused("the model: tensor '2.weight' holds NaN or infinite values", broken, None, x, y)
    bn = nn.Sequential(nn.Linear(10, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 3))
    bn[1].running_var[0] = float("nan")  # a statistic, not a parameter
    refused("the model: tensor '1.running_var' holds NaN", bn, None, x, y)


def test_a_data_parallel_wrapper_is_measured_as_the_module_it_runs():
    """With a BatchNorm to fold, by its name: the wrapper's "module." prefix broke that."""
    x, y = data()
    torch.manual_seed(2)
    init = nn.Sequential(nn.Linear(10, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3))
    model = copy.deepcopy(init)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1)
    names = ["frobenius_distance", "dist_spec_init", "margin", "path_norm"]
    plain = compute(MeasureContext(model, init, x, y, device="cpu"), names)
    for wrapped_model, wrapped_init in [(nn.DataParallel(copy.deepcopy(model)), init),
                                        (model, nn.DataParallel(copy.deepcopy(init)))]:
        got = compute(MeasureContext(wrapped_model, wrapped_init, x, y, device="cpu"), names)
        assert got == plain


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
def test_models_of_other_float_dtypes_are_measured(dtype: torch.dtype):
    """path_norm, the PAC-Bayes and sharpness searches failed on float64 and float16 models
    (a float32 input and flat parameter vector); float32 data are cast to the model's dtype."""
    x, y = data(200)
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(200):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    names = ["path_norm", "pacbayes_sigma", "sharpness_alpha", "margin"]
    single = compute(MeasureContext(model, None, x, y, device="cpu"), names)
    other = compute(MeasureContext(copy.deepcopy(model).to(dtype), None, x, y, device="cpu"),
                    names)
    # path_norm and margin are deterministic: equal up to the dtype's rounding
    tol = 1e-5 if dtype == torch.float64 else 1e-2
    for name in ("path_norm", "margin"):
        assert other[name] == pytest.approx(single[name], rel=tol), name
    for name in ("pacbayes_sigma", "sharpness_alpha"):  # searches: a value, not a failure
        assert math.isfinite(other[name]) and other[name] > 0, name


def test_a_model_without_linear_or_conv_layers_has_no_weight_measures():
    class Scale(nn.Module):  # a parameter outside any Linear/Conv module
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.randn(10, 3))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x @ self.w

    x, y = data()
    init = Scale()
    values = compute(MeasureContext(Scale(), init, x, y, device="cpu"),
                     ["prod_of_spec", "sum_of_spec", "param_norm", "frobenius_distance",
                      "module_criticality"])
    assert all(math.isnan(v) for v in values.values()), values  # were 1, error, 0, 0, 0


def test_compute_names_the_measure_that_lacks_something_and_defaults_to_what_it_can():
    x, y = data()
    ctx = MeasureContext(mlp(), None, x, y, device="cpu")
    with pytest.raises(GengapError) as err:
        compute(ctx, ["frobenius_distance"])
    assert str(err.value).startswith("frobenius_distance: this measure needs the initial")
    every = compute(ctx)  # all that this context can give: no init, trajectory, second run
    assert "margin" in every and "frobenius_distance" not in every
    assert set(profile(ctx).values) == set(every)  # the profile chooses alike


def test_a_model_computes_in_its_layers_dtype_not_its_first_parameters():
    """A float64 temperature registered before float32 layers: the inputs stay float32."""
    class Tempered(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.temperature = nn.Parameter(torch.ones((), dtype=torch.float64))
            self.net = mlp()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x) / self.temperature.float()

    x, y = data()
    values = compute(MeasureContext(Tempered(), None, x, y, device="cpu"), ["margin"])
    assert math.isfinite(values["margin"])


def test_compute_without_names_leaves_out_agreement_without_held_out_inputs():
    x, y = data()
    every = compute(MeasureContext(mlp(), None, x, y, device="cpu", second_model=mlp()))
    assert "margin" in every and "disagreement" not in every


def test_measures_are_chosen_by_names_only():
    x, y = data()
    ctx = MeasureContext(mlp(), x_train=x, y_train=y, device="cpu")
    for bad in (5, ["margin", 3], [b"margin"]):
        with pytest.raises(GengapError, match="a name or a list of names"):
            compute(ctx, bad)
    for good in (("margin", "params"), {"margin": 1, "params": 2}.keys(),
                 (n for n in ["margin", "params"])):
        assert set(compute(ctx, good)) == {"margin", "params"}
