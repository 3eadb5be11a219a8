"""Relative flatness (Petzka et al. 2021): both measures against the definition
Σ_{s,s'} ⟨w_s, w_s'⟩ Tr(H_{s,s'}) with H from a brute-force autograd Hessian, on Linear, Conv2d
and Conv1d layers; invariance to rescaling each neuron by its own factor, where the plain
Hessian trace changes."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from explicit_hessian import explicit_hessian_trace
from torch import nn
from torch.func import functional_call

from gengap.measures import MeasureContext, compute
from gengap.measures.relative_flatness import LayerCurvature, feature_layer

pytestmark = pytest.mark.usefixtures("one_thread")

FACTORS = [0.1, 3.0, 25.0, 0.5, 7.0]  # one per neuron of the feature layer


def mlp(activation: type[nn.Module] = nn.ReLU) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 6), nn.ReLU(), nn.Linear(6, 5), activation(),
                        nn.Linear(5, 4)).double()
    x = torch.randn(24, 3, dtype=torch.float64)
    y = torch.randint(0, 4, (24,))
    return net, x, y


def cnn() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """conv → ReLU → max-pool → conv (the feature layer, 5 channels) → BN → ReLU → linear."""
    torch.manual_seed(1)
    bn = nn.BatchNorm2d(5)
    with torch.no_grad():
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.2, 0.2)
    net = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(3, 5, 3, padding=1, stride=2), bn, nn.ReLU(), nn.Flatten(),
                        nn.Linear(5 * 2 * 2, 4)).double().eval()
    x = torch.randn(12, 2, 8, 8, dtype=torch.float64)
    return net, x, torch.randint(0, 4, (12,))


def cnn1d() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(2)
    net = nn.Sequential(nn.Conv1d(2, 4, 3, padding=1), nn.ReLU(), nn.Conv1d(4, 5, 3, padding=1),
                        nn.ReLU(), nn.AdaptiveAvgPool1d(1), nn.Flatten(),
                        nn.Linear(5, 3)).double().eval()
    x = torch.randn(10, 2, 7, dtype=torch.float64)
    return net, x, torch.randint(0, 3, (10,))


def value(net: nn.Module, x: torch.Tensor, y: torch.Tensor, name: str) -> float:
    return compute(MeasureContext(net, x_train=x, y_train=y, device="cpu"), [name])[name]


def brute_force_kappa(net: nn.Module, layer_name: str, x: torch.Tensor, y: torch.Tensor
                      ) -> float:
    """The definition, term by term, from the full Hessian of the loss in the layer's weight."""
    key = f"{layer_name}.weight"
    w = dict(net.named_parameters())[key].detach().clone()

    def loss_of(weight: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(functional_call(net, {key: weight}, (x,)), y)

    n = w.shape[0]
    hess = torch.autograd.functional.hessian(loss_of, w).reshape(n, -1, n, w[0].numel())
    rows = w.reshape(n, -1)
    return sum(float(rows[s] @ rows[t]) * float(torch.trace(hess[s, :, t, :]))
               for s in range(n) for t in range(n))


@pytest.mark.parametrize("make", [mlp, cnn, cnn1d])
def test_relative_flatness_equals_the_brute_force_definition(make) -> None:
    net, x, y = make()
    name, _ = feature_layer(net)
    expected = brute_force_kappa(net, name, x, y)
    assert expected > 0
    assert value(net, x, y, "relative_flatness") == pytest.approx(expected, rel=1e-9)


def test_relative_flatness_in_batches_equals_one_batch(monkeypatch) -> None:
    from gengap.measures import relative_flatness as rf

    net, x, _ = cnn()
    _, layer = feature_layer(net)
    cpu = torch.device("cpu")
    whole = rf.relative_flatness_of_layer(net, layer, x, cpu, batch_size=len(x))
    assert rf.relative_flatness_of_layer(net, layer, x, cpu, batch_size=5) == pytest.approx(
        whole, rel=1e-12)
    monkeypatch.setattr(rf, "JACOBIAN_BUDGET", 1)  # one example per batch
    assert rf.relative_flatness_of_layer(net, layer, x, cpu) == pytest.approx(whole, rel=1e-12)


def test_a_float32_network_keeps_precision_when_its_predictions_are_confident() -> None:
    """Near one-hot softmax outputs make Σ_c p_c M_cc − pᵀMp cancel: computed so in float32
    it is 10 % off here. The centred sum of squares agrees with float64 to the precision of
    the float32 logits themselves (5e-5 here)."""
    from gengap.measures import relative_flatness as rf

    net, x, _ = cnn()
    with torch.no_grad():
        net[-1].weight.mul_(1000.0)  # confident: 1 − max p < 1e-6 on every example
    with torch.no_grad():
        p = torch.softmax(net(x), dim=1)
    assert float((1 - p.max(dim=1).values).max()) < 1e-6
    _, layer = feature_layer(net)
    cpu = torch.device("cpu")
    exact = rf.relative_flatness_of_layer(net, layer, x, cpu)
    single = net.float()
    _, layer32 = feature_layer(single)
    assert rf.relative_flatness_of_layer(single, layer32, x.float(), cpu) == pytest.approx(
        exact, rel=1e-3)


def test_after_tanh_it_is_the_gauss_newton_part() -> None:
    """After a smooth activation the value is Σ⟨w_s, w_s'⟩ Tr(G_{s,s'}), G = Jᵀ A J the
    Gauss-Newton matrix, which differs from the Hessian by the residual term."""
    net, x, y = mlp(nn.Tanh)
    w = net[2].weight.detach().clone()

    def logits_of(weight: torch.Tensor) -> torch.Tensor:
        return functional_call(net, {"2.weight": weight}, (x,))

    jac = torch.autograd.functional.jacobian(logits_of, w).reshape(len(x), 4, -1)  # (N, C, P)
    p = torch.softmax(logits_of(w).detach(), 1)
    a = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]
    ggn = torch.einsum("ncp,ncd,ndq->pq", jac, a, jac) / len(x)
    n = w.shape[0]
    ggn = ggn.reshape(n, -1, n, w.shape[1])
    expected = sum(float(w[s] @ w[t]) * float(torch.trace(ggn[s, :, t, :]))
                   for s in range(n) for t in range(n))
    got = value(net, x, y, "relative_flatness")
    assert got == pytest.approx(expected, rel=1e-9)
    assert got != pytest.approx(brute_force_kappa(net, "2", x, y), rel=1e-6)


def rescale_mlp(net: nn.Module, factors: list[float]) -> nn.Module:
    """Neuron s of the feature layer ×λ_s (row and bias), the head's column s ÷λ_s: with the
    ReLU in between, the same function."""
    lam = torch.tensor(factors, dtype=torch.float64)
    scaled = copy.deepcopy(net)
    with torch.no_grad():
        scaled[2].weight.mul_(lam[:, None])
        scaled[2].bias.mul_(lam)
        scaled[4].weight.div_(lam[None, :])
    return scaled


def test_relative_flatness_is_unchanged_by_rescaling_each_neuron() -> None:
    net, x, y = mlp()
    scaled = rescale_mlp(net, FACTORS)
    assert torch.allclose(scaled(x), net(x), rtol=1e-12, atol=1e-12)
    for name in ("relative_flatness", "relative_flatness_head"):
        base = value(net, x, y, name)
        assert base > 0
        assert value(scaled, x, y, name) == pytest.approx(base, rel=1e-9)
    # the definition itself, by brute force, agrees: the invariance is the measure's, not
    # an artefact of the closed form
    assert brute_force_kappa(scaled, "2", x, y) == pytest.approx(
        brute_force_kappa(net, "2", x, y), rel=1e-9)
    # the plain Hessian trace is not invariant, exactly or by Hutchinson's estimate
    exact, exact_scaled = explicit_hessian_trace(net, x, y), explicit_hessian_trace(scaled, x, y)
    assert abs(exact_scaled / exact - 1) > 0.5
    assert abs(value(scaled, x, y, "hessian_trace") / value(net, x, y, "hessian_trace") - 1) > 0.5


def test_relative_flatness_of_a_convolution_is_unchanged_by_rescaling_its_channels() -> None:
    torch.manual_seed(3)
    net = nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.Conv2d(3, 5, 3), nn.ReLU(),
                        nn.Flatten(), nn.Linear(5 * 2 * 2, 4)).double()
    x = torch.randn(10, 2, 6, 6, dtype=torch.float64)
    y = torch.randint(0, 4, (10,))
    lam = torch.tensor(FACTORS, dtype=torch.float64)
    scaled = copy.deepcopy(net)
    with torch.no_grad():
        scaled[2].weight.mul_(lam[:, None, None, None])
        scaled[2].bias.mul_(lam)
        scaled[5].weight.div_(lam.repeat_interleave(4)[None, :])  # flatten: channel-major
    assert torch.allclose(scaled(x), net(x), rtol=1e-12, atol=1e-12)
    for name in ("relative_flatness", "relative_flatness_head"):
        assert value(scaled, x, y, name) == pytest.approx(value(net, x, y, name), rel=1e-9)


def test_relative_flatness_head_equals_the_definition_on_the_normalized_network() -> None:
    """Normalize the penultimate features by hand (feature layer's rows ÷σ, head's columns
    ×σ; a constant feature moved into the head's bias) and apply the definition to the head
    by brute force."""
    net, x, y = mlp()
    with torch.no_grad():
        feats = net[3](net[2](net[1](net[0](x))))
    sigma = feats.std(dim=0, unbiased=False)
    dead = sigma == 0
    assert 0 < int(dead.sum()) < len(sigma)  # this net has a dead feature: the edge case
    normalized = rescale_mlp(net, torch.where(dead, 1.0, 1 / sigma).tolist())
    with torch.no_grad():
        head = normalized[4]
        head.bias.add_(head.weight[:, dead] @ feats[0, dead])
        head.weight[:, dead] = 0
    assert torch.allclose(normalized(x), net(x), rtol=1e-12, atol=1e-12)
    expected = brute_force_kappa(normalized, "4", x, y)
    assert value(net, x, y, "relative_flatness_head") == pytest.approx(expected, rel=1e-9)


def test_relative_flatness_needs_a_layer_before_the_head() -> None:
    net = nn.Linear(3, 4).double()
    x = torch.randn(5, 3, dtype=torch.float64)
    got = value(net, x, torch.randint(0, 4, (5,)), "relative_flatness")
    assert got != got  # NaN: not applicable


def test_feature_layer_follows_running_order_in_a_residual_block() -> None:
    from gengap.models.families import build
    from gengap.specs import ArchSpec

    net = build(ArchSpec(family="resnet", depth=1, width=4), (3, 8, 8), 3)
    last_block = [m for m in net.modules() if hasattr(m, "shortcut")][-1]
    assert last_block.shortcut is not None  # registered after conv2, runs before it
    _, by_registration = feature_layer(net)
    _, by_running = feature_layer(net, torch.randn(1, 3, 8, 8))
    assert by_registration is last_block.shortcut
    assert by_running is last_block.conv2


@pytest.mark.parametrize(("stride", "padding"), [(1, 0), (2, 0), (1, "valid")])
def test_one_by_one_convolution_patches(stride: int, padding: int | str) -> None:
    """The 1x1 fast path (NiN's layers) against the brute-force definition."""
    torch.manual_seed(4)
    net = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.Conv2d(3, 4, 1, stride=stride,
                                                                   padding=padding),
                        nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 3, 1), nn.AdaptiveAvgPool2d(1),
                        nn.Flatten()).double().eval()
    x = torch.randn(9, 2, 5, 5, dtype=torch.float64)
    y = torch.randint(0, 3, (9,))
    assert value(net, x, y, "relative_flatness") == pytest.approx(
        brute_force_kappa(net, "2", x, y), rel=1e-9)


def test_smooth_modules_after_the_feature_layer_are_reported() -> None:
    for activation, expected in ((nn.ReLU, []), (nn.Tanh, ["3 (Tanh)"])):
        net, x, y = mlp(activation)
        ctx = MeasureContext(net, x_train=x, y_train=y, device="cpu")
        compute(ctx, ["relative_flatness"])
        assert ctx.details["relative_flatness_layer"] == "2"
        assert ctx.details["relative_flatness_smooth_after"] == expected


def _context(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> MeasureContext:
    return MeasureContext(net, x_train=x, y_train=y, device="cpu", batch_size=5)


def test_planned_relative_flatness_rides_along_the_logits_pass() -> None:
    """Planned, it is computed in the logits pass (12 examples in batches of 5): the value and
    the logits equal those computed apart, and its time is its own pass's."""
    net, x, y = cnn()
    alone = _context(net, x, y)
    expected = alone.value("relative_flatness")
    assert not alone.pass_extras  # asked for before any logits: computed alone
    ctx = _context(net, x, y)
    ctx.plan(["margin", "relative_flatness"])
    assert ctx.value("margin") == pytest.approx(alone.value("margin"), rel=1e-12)
    assert "relative_flatness" in ctx.pass_extras and ctx.planned == {"relative_flatness"}
    assert torch.equal(ctx.logits, alone.logits)
    assert ctx.value("relative_flatness") == pytest.approx(expected, rel=1e-12)
    assert not ctx.planned
    assert ctx.pass_seconds["relative_flatness"] > 0
    assert expected == pytest.approx(value(net, x, y, "relative_flatness"), rel=1e-12)


def test_a_profile_lists_a_riding_relative_flatness_once_as_a_measure() -> None:
    from gengap.measures import profile

    net, x, y = cnn()
    ctx = _context(net, x, y)
    result = profile(ctx, ["margin", "relative_flatness"])
    assert "relative_flatness" in ctx.pass_extras  # it rode along the logits pass
    assert "relative_flatness" not in result.pass_seconds
    assert result.measure_seconds["relative_flatness"] >= ctx.pass_seconds["relative_flatness"]
    assert "logits" in result.pass_seconds


def test_compute_plans_what_it_is_given() -> None:
    net, x, y = cnn()
    ctx = _context(net, x, y)
    values = compute(ctx, ["output_entropy", "relative_flatness"])
    assert "relative_flatness" in ctx.pass_extras
    assert values["relative_flatness"] == pytest.approx(
        _context(net, x, y).value("relative_flatness"), rel=1e-12)


def test_a_ride_that_fails_leaves_the_logits_and_the_measure_alone(monkeypatch) -> None:
    net, x, y = cnn()
    expected = _context(net, x, y)
    calls = []
    add = LayerCurvature.add

    def failing_once(self, logits):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("a backward pass this layer cannot take")
        add(self, logits)

    monkeypatch.setattr(LayerCurvature, "add", failing_once)
    ctx = _context(net, x, y)
    ctx.plan(["relative_flatness"])
    assert torch.equal(ctx.logits, expected.logits)
    assert not ctx.pass_extras
    assert ctx.value("relative_flatness") == pytest.approx(
        expected.value("relative_flatness"), rel=1e-12)


def test_a_network_without_a_layer_before_its_head_plans_relative_flatness_in_vain() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4)).double()
    x, y = torch.randn(9, 3, dtype=torch.float64), torch.randint(0, 4, (9,))
    values = compute(_context(net, x, y), ["cross_entropy", "relative_flatness"])
    assert math.isnan(values["relative_flatness"]) and math.isfinite(values["cross_entropy"])


def test_an_in_place_activation_after_the_layer_rides_and_gives_the_same_value() -> None:
    """ReLU(inplace=True) after the feature layer wrote into the leaf the Jacobians are taken
    at (autograd refused): the hook hands the network a copy."""
    net, x, y = cnn()
    inplace = copy.deepcopy(net)
    inplace[5] = nn.ReLU(inplace=True)
    ctx = _context(inplace, x, y)
    values = compute(ctx, ["cross_entropy", "relative_flatness"])
    assert "relative_flatness" in ctx.pass_extras
    expected = _context(net, x, y)
    assert values["relative_flatness"] == pytest.approx(
        expected.value("relative_flatness"), rel=1e-12)
    assert values["cross_entropy"] == pytest.approx(expected.value("cross_entropy"), rel=1e-12)


def test_a_rider_that_cannot_be_set_up_leaves_the_logits_pass_alone(monkeypatch) -> None:
    from gengap.measures import flatness

    def broken(_ctx):
        raise RuntimeError("a probe this layer cannot take")

    monkeypatch.setattr(flatness, "relative_flatness_rider", broken)
    net, x, y = cnn()
    ctx = _context(net, x, y)
    ctx.plan(["relative_flatness", "margin"])
    assert torch.equal(ctx.logits, _context(net, x, y).logits)
    assert "relative_flatness" not in ctx.planned and not ctx.pass_extras


def test_compute_timed_gives_a_ride_its_own_seconds(monkeypatch) -> None:
    """The time relative flatness spends in the logits pass is its own, not that of the
    measure that triggered the pass (the zoo stores these seconds)."""
    import time

    from gengap.measures import compute_timed

    jacobians = LayerCurvature._jacobians

    def slow_jacobians(self, logits):  # inside add's own timing
        time.sleep(0.3)
        return jacobians(self, logits)

    monkeypatch.setattr(LayerCurvature, "_jacobians", slow_jacobians)
    net, x, y = cnn()
    ctx = _context(net, x, y)
    timed = compute_timed(ctx, ["cross_entropy", "relative_flatness"])
    assert "relative_flatness" in ctx.pass_extras
    assert timed["relative_flatness"][1] >= 0.9  # three batches of 5, 12 examples
    assert timed["cross_entropy"][1] < 0.5
