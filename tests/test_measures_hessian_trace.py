"""The exact Hessian trace of piecewise-linear networks (per-example Gauss-Newton norms) against
the explicit Hessian; the networks it must not take (smooth steps found in modules or in a
forward's own calls, layers run twice, shared or unsupported parameters), which fall back to
Hutchinson's estimator."""

from __future__ import annotations

import pytest
import torch
from explicit_hessian import explicit_hessian_trace
from torch import nn

from gengap.interop.pgdl.keras import build_keras
from gengap.measures import MeasureContext, compute
from gengap.measures.exact_trace_checks import exact_trace_obstacle
from gengap.measures.gauss_newton_trace import gauss_newton_trace
from gengap.measures.smoothness import smooth_steps
from gengap.models import build
from gengap.specs import ArchSpec

pytestmark = pytest.mark.usefixtures("one_thread")


def with_random_statistics(net: nn.Module) -> nn.Module:
    """BatchNorm layers with running statistics and affine parameters away from 0 and 1."""
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                shape = m.running_mean.shape
                m.running_mean.copy_(torch.rand(shape, generator=gen) - 0.5)
                m.running_var.copy_(torch.rand(shape, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(shape, generator=gen) + 0.5)
                m.bias.copy_(torch.rand(shape, generator=gen) - 0.5)
    return net.eval()


def measured(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, dict]:
    ctx = MeasureContext(net, x_train=x, y_train=y, device="cpu")
    return compute(ctx, ["hessian_trace"])["hessian_trace"], ctx.details


PIECEWISE_LINEAR_NETS = {
    "conv, BN, ReLU, 1x1 conv, pooling, linear": (
        lambda: nn.Sequential(nn.Conv2d(2, 4, 3, stride=2, padding=1), nn.BatchNorm2d(4),
                              nn.ReLU(), nn.Conv2d(4, 5, 1), nn.ReLU(), nn.MaxPool2d(2),
                              nn.Flatten(), nn.Linear(20, 3)), (2, 8, 8)),
    "linear, ReLU, BatchNorm1d, linear": (
        lambda: nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.BatchNorm1d(8), nn.Linear(8, 4)),
        (6,)),
    "conv1d, max-pool, linear without bias": (
        lambda: nn.Sequential(nn.Conv1d(2, 3, 3), nn.ReLU(), nn.MaxPool1d(2), nn.Flatten(),
                              nn.Linear(9, 3, bias=False)), (2, 8)),
    "gengap resnet (pre-activation, 1x1 shortcut)": (
        lambda: build(ArchSpec(family="resnet", width=4, depth=1), (3, 8, 8), 3), (3, 8, 8)),
    "gengap nin": (
        lambda: build(ArchSpec(family="nin", width=4, depth=1), (3, 8, 8), 3), (3, 8, 8)),
    "PGDL Keras convnet ('same' max-pooling, channels-last flatten)": (
        lambda: build_keras({"input_shape": [6, 6, 2], "model_config": [
            {"layer_name": "Conv2D", "filters": 3, "kernel_size": 3, "strides": 1,
             "padding": "same", "activation": "relu"},
            {"layer_name": "MaxPooling2D", "pool_size": 3, "strides": 2, "padding": "same"},
            {"layer_name": "Flatten"},
            {"layer_name": "Dense", "units": 5, "activation": "relu"},
            {"layer_name": "Dense", "units": 3}]}), (2, 6, 6)),
}


@pytest.mark.parametrize("case", sorted(PIECEWISE_LINEAR_NETS))
def test_exact_trace_equals_the_explicit_hessian_trace(case: str) -> None:
    make, shape = PIECEWISE_LINEAR_NETS[case]
    torch.manual_seed(0)
    net = with_random_statistics(make().double())
    x = 2 * torch.randn(20, *shape, dtype=torch.float64)
    y = torch.randint(0, 3, (20,))
    value, details = measured(net, x, y)
    assert value == pytest.approx(explicit_hessian_trace(net, x, y), rel=1e-10)
    assert details["hessian_trace_stderr"] == 0.0
    assert "hessian_trace_estimated_because" not in details


def test_frozen_parameters_are_left_out_of_the_trace() -> None:
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3)).double().eval()
    x, y = torch.randn(12, 4, dtype=torch.float64), torch.randint(0, 3, (12,))
    full = gauss_newton_trace(net, x, torch.device("cpu"), batch_size=5)
    net[0].weight.requires_grad_(False)
    part = gauss_newton_trace(net, x, torch.device("cpu"), batch_size=5)
    frozen_block = explicit_hessian_trace(net, x, y) - part  # the explicit one sees every tensor
    assert part < full
    assert full - part == pytest.approx(frozen_block, rel=1e-10)


def test_a_confident_float32_network_keeps_its_precision() -> None:
    """Near-one-hot outputs: the squared norms are of small gradients, not differences."""
    torch.manual_seed(2)
    net = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 4))
    x = torch.randn(64, 5)
    y = torch.randint(0, 4, (64,))
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    for _ in range(1000):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    net.eval()
    assert nn.functional.cross_entropy(net(x), y) < 1e-3  # confident
    single = gauss_newton_trace(net, x, torch.device("cpu"))
    double = gauss_newton_trace(net.double(), x.double(), torch.device("cpu"))
    assert single == pytest.approx(double, rel=1e-4)


class Gated(nn.Module):
    """Two branches multiplied: bilinear in the activations, though each step is linear."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.head = nn.Linear(4, 5), nn.Linear(4, 5), nn.Linear(5, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.a(x) * self.b(x) * 0.5)


class TanhInForward(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.hidden, self.head = nn.Linear(4, 5), nn.Linear(5, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.hidden(x)) / 2)


class Twice(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.square, self.head = nn.Linear(4, 4), nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.square(torch.relu(self.square(x)))))


def tied() -> nn.Module:
    first, second = nn.Linear(4, 4), nn.Linear(4, 4)
    second.weight = first.weight
    return nn.Sequential(first, nn.ReLU(), second, nn.ReLU(), nn.Linear(4, 3))


class WeightOutsideItsLayer(nn.Module):
    """A Linear layer's weight applied by F.linear: the layer itself never runs."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden, self.head = nn.Linear(4, 5), nn.Linear(5, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(nn.functional.linear(x, self.hidden.weight)))


class Standardized(nn.Linear):
    """A weight-standardized layer: its own forward divides the weight by its norm."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x, self.weight / self.weight.norm(), self.bias)


class RowsNotExamples(nn.Module):
    """Each example is two rows of 2 features: the hidden layer sees twice the batch."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden, self.head = nn.Linear(2, 5), nn.Linear(10, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = torch.relu(self.hidden(x.reshape(-1, 2)))
        return self.head(rows.reshape(len(x), -1))


class InPlace(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.hidden, self.head = nn.Linear(4, 5), nn.Linear(5, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.hidden(x).tanh_())


class Reciprocal(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.hidden, self.head = nn.Linear(4, 5), nn.Linear(5, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(1 / (torch.relu(self.hidden(x)) + 1))


OBSTACLES = {
    "tanh module": (lambda: nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)),
                    "not piecewise linear: 1 (Tanh)"),
    "tanh in forward": (TanhInForward, "not piecewise linear: tanh()"),
    "in-place tanh_": (InPlace, "not piecewise linear: tanh()"),
    "1 / activation": (Reciprocal, "by a varying tensor"),
    "product of two branches": (Gated, "mul() of two varying tensors"),
    "layer run twice": (Twice, "square runs more than once"),
    "tied weights": (tied, "2 shares a parameter with 0"),
    "LayerNorm": (lambda: nn.Sequential(nn.Linear(4, 5), nn.LayerNorm(5), nn.Linear(5, 3)),
                  "1: parameters in a layer of type LayerNorm"),
    "grouped convolution": (
        lambda: nn.Sequential(nn.Conv1d(4, 4, 1, groups=2), nn.Flatten(), nn.Linear(4, 3)),
        "0: a convolution of 2 groups"),
    # what only the numerical checks see
    "weight applied outside its layer": (WeightOutsideItsLayer,
                                         "linear() of a parameter outside its layer"),
    "layer subclass with its own forward": (
        lambda: nn.Sequential(Standardized(4, 5), nn.ReLU(), nn.Linear(5, 3)),
        "the logits are curved in 0's parameters alone"),
    "rows of a layer that are not examples": (RowsNotExamples, "do not add up"),
}


@pytest.mark.parametrize("case", sorted(OBSTACLES))
def test_a_network_that_is_not_piecewise_linear_per_layer_gets_the_estimate(case: str) -> None:
    make, reason = OBSTACLES[case]
    torch.manual_seed(3)
    net = make().double().eval()
    x = torch.randn(16, 4, 1, dtype=torch.float64) if case == "grouped convolution" else \
        torch.randn(16, 4, dtype=torch.float64)
    y = torch.randint(0, 3, (16,))
    assert reason in (exact_trace_obstacle(net, x[:2]) or "")
    value, details = measured(net, x, y)
    assert reason in details["hessian_trace_estimated_because"]
    exact = explicit_hessian_trace(net, x, y)
    assert details["hessian_trace_stderr"] > 0
    assert abs(value - exact) < 5 * details["hessian_trace_stderr"] + 1e-9 * abs(exact)


def test_smooth_steps_after_a_layer_see_only_what_follows_it() -> None:
    net = TanhInForward().double()
    x = torch.randn(3, 4, dtype=torch.float64)
    assert smooth_steps(net, x) == ["tanh()"]  # divided by a number: linear
    assert smooth_steps(net, x, after=net.head) == []
    linear = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3))
    assert smooth_steps(linear, x.float()) == []


def test_classes_split_over_several_backward_passes_give_the_same_trace(monkeypatch) -> None:
    """Many classes: the output gradients of a pass stay within the budget, same value."""
    import gengap.measures.gauss_newton_trace as module

    torch.manual_seed(4)
    net = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 12)).double().eval()
    x = torch.randn(9, 5, dtype=torch.float64)
    whole = gauss_newton_trace(net, x, torch.device("cpu"), batch_size=4)
    monkeypatch.setattr(module, "GRADIENT_BUDGET", 4 * (7 + 12) * 5)  # 5 classes a pass
    assert gauss_newton_trace(net, x, torch.device("cpu"), batch_size=4) == pytest.approx(
        whole, rel=1e-12)
    y = torch.randint(0, 12, (9,))
    assert whole == pytest.approx(explicit_hessian_trace(net, x, y), rel=1e-10)


class ScalesItsInputInPlace(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 6), nn.ReLU(),
                                 nn.Linear(6, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.mul_(1.0))  # in place on the input (the same values)


def test_a_model_working_in_place_on_its_input_is_probed_on_a_copy() -> None:
    torch.manual_seed(6)
    net = ScalesItsInputInPlace().double().eval()
    x, y = torch.randn(12, 4, dtype=torch.float64), torch.randint(0, 3, (12,))
    ctx = MeasureContext(net, x_train=x, y_train=y, device="cpu")
    values = compute(ctx, ["hessian_trace", "relative_flatness"])
    plain = MeasureContext(net.net, x_train=x, y_train=y, device="cpu")
    assert values == pytest.approx(compute(plain, ["hessian_trace", "relative_flatness"]),
                                   rel=1e-10)


class BranchOnLargeInputs(nn.Module):
    """A smooth branch taken only for inputs the probe (the first two examples) lacks."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden, self.head = nn.Linear(4, 6), nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.hidden(x))
        large = x.abs().amax(1, keepdim=True) > 3
        if large.any():
            h = torch.where(large, torch.tanh(h), h)
        return self.head(h)


class ParameterReadOutsideItsLayer(nn.Module):
    """A weight's rows read outside its layer, for inputs the probe lacks."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden, self.head = nn.Linear(4, 6), nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.head(torch.relu(self.hidden(x)))
        large = (x.abs().amax(1, keepdim=True) > 3).to(x.dtype)
        if large.any():
            out = out + large * self.hidden.weight[:3].sum(1)
        return out


class KeywordsAndSideHead(nn.Module):
    """A layer called by keyword, and a side head whose output the logits do not use."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden, self.head, self.side = nn.Linear(4, 6), nn.Linear(6, 3), nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.hidden(input=x))
        self.side_output = self.side(h)
        return self.head(input=h)


@pytest.mark.parametrize("make, reason", [
    (BranchOnLargeInputs, "tanh()"),
    (ParameterReadOutsideItsLayer, "getitem() of a parameter outside its layer"),
])
def test_what_only_other_examples_than_the_probe_show_falls_back(make, reason) -> None:
    torch.manual_seed(7)
    net = make().double().eval()
    x = torch.randn(30, 4, dtype=torch.float64)
    x[:2] *= 0.3  # the probe: no branch taken
    x[5] *= 10
    y = torch.randint(0, 3, (30,))
    assert exact_trace_obstacle(net, x[:2]) is None
    value, details = measured(net, x, y)
    assert reason in details["hessian_trace_estimated_because"]
    assert details["hessian_trace_stderr"] > 0
    exact = explicit_hessian_trace(net, x, y)
    assert abs(value - exact) < 5 * details["hessian_trace_stderr"]


def test_layers_called_by_keyword_and_outputs_the_logits_do_not_use_are_exact() -> None:
    torch.manual_seed(8)
    net = KeywordsAndSideHead().double().eval()
    x, y = torch.randn(14, 4, dtype=torch.float64), torch.randint(0, 3, (14,))
    value, details = measured(net, x, y)
    assert "hessian_trace_estimated_because" not in details
    assert value == pytest.approx(explicit_hessian_trace(net, x, y), rel=1e-10)
