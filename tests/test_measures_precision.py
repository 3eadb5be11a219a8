"""The precision of the Monte Carlo passes (MeasureOptions.precision): which dtype "auto" picks,
that the passes really run in it, and that the searches keep their meaning in bfloat16."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from gengap.measures import MeasureContext, compute, flatness
from gengap.measures import precision as precision_module
from gengap.measures.flatness import module_criticality_scores
from gengap.measures.perturbation import FlatNet
from gengap.measures.precision import autocast, forward_flops, monte_carlo_dtype
from gengap.specs import MeasureOptions

CPU = torch.device("cpu")


def test_forward_flops_of_a_linear_layer_is_twice_its_multiply_adds() -> None:
    assert forward_flops(nn.Linear(300, 200), torch.randn(1, 300)) == 2 * 300 * 200


def test_forward_flops_count_convolutions_as_torchs_flop_counter_does() -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8),
                          nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1, groups=4), nn.Flatten(),
                          nn.Linear(8 * 8 * 8, 10)).eval()
    example = torch.randn(1, 3, 16, 16)
    with FlopCounterMode(display=False) as counter:
        model(example)
    assert forward_flops(model, example) == counter.get_total_flops()


def test_forward_flops_of_attention_count_its_projections_and_products() -> None:
    width, length = 16, 7
    layer = nn.TransformerEncoderLayer(width, 4, dim_feedforward=32, batch_first=True).eval()
    # projections q, k, v, out over 7 tokens; scores and weighted sum (7 x 7 x 16 each);
    # the feed-forward's two layers
    expected = 2 * (4 * width * width * length + 2 * length * length * width
                    + 2 * width * 32 * length)
    with torch.no_grad():  # the fused path (no module hook) is not taken for the count
        assert forward_flops(layer, torch.randn(1, length, width)) == expected


def test_native_bfloat16_on_cuda_means_ampere_or_later(monkeypatch: pytest.MonkeyPatch) -> None:
    for major, native in ((7, False), (8, True), (9, True)):
        monkeypatch.setattr(torch.cuda, "get_device_capability",
                            lambda device=None, major=major: (major, 0))
        assert precision_module.native_bfloat16(torch.device("cuda")) is native


@pytest.mark.parametrize("native", [True, False])
def test_auto_takes_bfloat16_only_where_native_and_the_model_is_large_enough(
        monkeypatch: pytest.MonkeyPatch, native: bool) -> None:
    monkeypatch.setattr(precision_module, "native_bfloat16", lambda device: native)
    large = nn.Sequential(nn.Linear(1000, 600), nn.ReLU(), nn.Linear(600, 10))  # 1.2 MFLOP
    small = nn.Sequential(nn.Linear(100, 50), nn.ReLU(), nn.Linear(50, 10))  # 11 kFLOP
    example_large, example_small = torch.randn(1, 1000), torch.randn(1, 100)
    assert monte_carlo_dtype("auto", large, example_large, CPU) == (
        torch.bfloat16 if native else None)
    assert monte_carlo_dtype("auto", small, example_small, CPU) is None
    # asked for explicitly, whatever the hardware; float32 never autocasts
    assert monte_carlo_dtype("bfloat16", small, example_small, CPU) == torch.bfloat16
    assert monte_carlo_dtype("float32", large, example_large, CPU) is None
    # a float64 model keeps its precision, asked or not
    wide = copy.deepcopy(large).double()
    for precision in ("auto", "bfloat16"):
        assert monte_carlo_dtype(precision, wide, example_large.double(), CPU) is None


def test_native_bfloat16_reads_the_cpus_capabilities(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    assert not precision_module.native_bfloat16(CPU)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
    assert precision_module.native_bfloat16(CPU)
    assert not precision_module.native_bfloat16(torch.device("meta"))


def test_autocast_sees_weights_changed_in_place_between_forwards() -> None:
    """Module criticality copies each perturbed weight into its layer: a cached bfloat16 cast
    of the old weight would make every perturbation look like none."""
    layer = nn.Linear(4, 3)
    x = torch.randn(5, 4)
    with torch.no_grad(), autocast(CPU, torch.bfloat16):
        before = layer(x).float()
        layer.weight.mul_(3.0)
        layer.bias.zero_()
        after = layer(x).float()
        assert after.dtype == torch.float32 and layer(x).dtype == torch.bfloat16
    expected = x @ layer.weight.detach().T
    torch.testing.assert_close(after, expected, rtol=2e-2, atol=2e-2)
    assert not torch.allclose(before, after, rtol=0.1, atol=0.1)


def test_flat_net_in_bfloat16_is_close_to_float32_and_differentiable() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 5))
    plain, low = FlatNet(model, CPU), FlatNet(model, CPU, torch.bfloat16)
    x = torch.randn(50, 20)
    exact, rounded = plain.forward(plain.vector, x), low.forward(low.vector, x)
    assert rounded.dtype == torch.float32
    assert not torch.equal(exact, rounded)  # it did run in bfloat16
    torch.testing.assert_close(rounded, exact, rtol=0.05, atol=0.05)
    u = torch.zeros_like(low.vector, requires_grad=True)
    loss = nn.functional.cross_entropy(low.forward(low.vector + u, x), torch.zeros(50).long())
    (grad,) = torch.autograd.grad(loss, u)
    assert grad.dtype == torch.float32 and bool(grad.abs().sum() > 0)


def test_context_records_the_precision_of_its_passes() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 2))
    x, y = torch.randn(40, 6), torch.randint(0, 2, (40,))
    for precision, expected in (("bfloat16", "bfloat16"), ("float32", "float32"),
                                ("auto", "float32")):  # a tiny model: float32 everywhere
        ctx = MeasureContext(model, x_train=x, y_train=y, device="cpu",
                             options=MeasureOptions(precision=precision))
        assert ctx.flat_net.autocast_dtype == (torch.bfloat16 if expected == "bfloat16"
                                               else None)
        assert "monte_carlo_precision" not in ctx.details  # no pass has run yet
        compute(ctx, ["pacbayes_sigma"])
        assert ctx.details["monte_carlo_precision"] == expected


def trained_float32() -> tuple[nn.Module, nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 16), nn.ReLU(), nn.Linear(16, 4))
    init = copy.deepcopy(net)
    x, y = torch.randn(64, 3), torch.randint(0, 4, (64,))
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    for _ in range(300):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    return net.eval(), init, x, y


def test_module_criticality_in_bfloat16_runs_every_loss_pass_in_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    net, init, x, y = trained_float32()
    exact = module_criticality_scores(net, init, x, y, CPU, draws=4)
    seen: list[torch.dtype | None] = []
    loss_sum = flatness._loss_sum

    def spied(model: nn.Module, xb: torch.Tensor, yb: torch.Tensor) -> float:
        seen.append(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu")
                    else None)
        return loss_sum(model, xb, yb)

    monkeypatch.setattr(flatness, "_loss_sum", spied)
    low = module_criticality_scores(net, init, x, y, CPU, draws=4,
                                    autocast_dtype=torch.bfloat16)
    assert seen and set(seen) == {torch.bfloat16}  # the final loss's pass too
    assert all(0 < v < float("inf") for v in low.values())  # both layers moved
    for name, score in exact.items():  # at most one σ step of the grid apart
        assert 0.25 <= low[name] / score <= 4, (name, low[name], score)


class SharedConvOutput(nn.Module):
    """A BatchNorm that must not be folded: the convolution's output also skips past it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.head = nn.Linear(8 * 8 * 8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.conv(x.float())  # float32 whatever the input: BatchNorm folding's check runs
        return self.head((self.bn(c) + c).relu().flatten(1))  # in the model's arithmetic


def test_module_criticality_in_bfloat16_checks_batchnorm_folding_in_float32() -> None:
    """Folding is checked on the model's outputs; under bfloat16 autocast that check's
    rounding allowance would let a wrong fold through (13x the float32 score of the head)."""
    torch.manual_seed(0)
    model = SharedConvOutput().eval()
    with torch.no_grad():
        model.bn.running_mean.uniform_(-1, 1)
        model.bn.running_var.uniform_(0.5, 2)
        model.bn.weight.uniform_(0.5, 2)
        init = copy.deepcopy(model)
        for p in init.parameters():
            p.mul_(0.5)
        x = torch.randn(64, 3, 8, 8)
        y = model(x).argmax(1)
    exact = module_criticality_scores(model, init, x, y, CPU, draws=2)
    low = module_criticality_scores(model, init, x, y, CPU, draws=2,
                                    autocast_dtype=torch.bfloat16)
    for name, score in exact.items():  # at most one σ step of the grid apart
        assert 0.25 <= low[name] / score <= 4, (name, low[name], score)


def test_no_monte_carlo_precision_is_reported_where_no_pass_ran() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 2))
    x, y = torch.randn(40, 6), torch.randint(0, 2, (40,))
    y = 1 - model(x).argmax(1).detach()  # every answer wrong: no σ′ (NaN)
    ctx = MeasureContext(model, copy.deepcopy(model), x_train=x, y_train=y, device="cpu")
    names = ["pacbayes_sigma", "sharpness_alpha", "pacbayes_orig", "pacbayes_mag_init",
             "sharpness_orig", "sharpness_mag_orig"]  # the bounds read the flat vector
    assert all(math.isnan(v) for v in compute(ctx, names).values())
    assert "monte_carlo_precision" not in ctx.details


def test_the_flat_network_needs_no_training_data() -> None:
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 2))
    ctx = MeasureContext(model, input_shape=(6,), device="cpu")
    assert ctx.flat_net.autocast_dtype is None and len(ctx.flat_net.vector) == 74
