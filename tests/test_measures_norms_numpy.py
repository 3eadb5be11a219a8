"""Norm and margin measures against numpy on hand-built networks (closed forms)."""

import numpy as np
import pytest
import torch
from torch import nn

from gengap.errors import GengapError
from gengap.measures import MeasureContext, compute, fold_batchnorm
from gengap.measures.layers import fold_batchnorm_with_scales, forward_copy


def two_layer(w1: np.ndarray, w2: np.ndarray, bias: bool = False) -> nn.Sequential:
    net = nn.Sequential(
        nn.Linear(w1.shape[1], w1.shape[0], bias=bias), nn.ReLU(),
        nn.Linear(w2.shape[1], w2.shape[0], bias=bias),
    )
    with torch.no_grad():
        net[0].weight.copy_(torch.from_numpy(w1))
        net[2].weight.copy_(torch.from_numpy(w2))
    return net


@pytest.fixture
def weights():
    rng = np.random.default_rng(0)
    return rng.normal(size=(5, 4)).astype(np.float32), rng.normal(size=(3, 5)).astype(np.float32)


def test_spectral_and_frobenius_norms_match_numpy(weights):
    w1, w2 = weights
    init = two_layer(w1 * 0.5, w2 * 0.25)
    ctx = MeasureContext(two_layer(w1, w2), init_model=init, input_shape=(4,), device="cpu")
    values = compute(ctx, ["params", "param_norm", "frobenius_distance", "prod_of_spec",
                           "prod_of_fro"])
    w1d, w2d = w1.astype(np.float64), w2.astype(np.float64)
    spec = [np.linalg.norm(w, 2) for w in (w1d, w2d)]
    fro = [np.linalg.norm(w, "fro") for w in (w1d, w2d)]
    assert values["params"] == 5 * 4 + 3 * 5
    assert values["param_norm"] == pytest.approx(fro[0] ** 2 + fro[1] ** 2, rel=1e-6)
    assert values["prod_of_spec"] == pytest.approx(spec[0] ** 2 * spec[1] ** 2, rel=1e-6)
    assert values["prod_of_fro"] == pytest.approx(fro[0] ** 2 * fro[1] ** 2, rel=1e-6)
    expected_dist = np.sum((0.5 * w1d) ** 2) + np.sum((0.75 * w2d) ** 2)
    assert values["frobenius_distance"] == pytest.approx(expected_dist, rel=1e-6)


def test_conv_kernels_are_reshaped_to_out_by_in_k_k():
    conv = nn.Conv2d(2, 3, 3, bias=False)
    net = nn.Sequential(conv, nn.Flatten())
    kernel = conv.weight.detach().double().numpy().reshape(3, -1)
    ctx = MeasureContext(net, input_shape=(2, 5, 5), device="cpu")
    assert compute(ctx, ["prod_of_spec"])["prod_of_spec"] == pytest.approx(
        np.linalg.norm(kernel, 2) ** 2, rel=1e-6
    )


def test_path_norm_of_a_two_layer_relu_net_is_the_sum_over_paths(weights):
    w1, w2 = weights
    ctx = MeasureContext(two_layer(w1, w2), input_shape=(4,), device="cpu")
    # Every input-output path i -> j -> k contributes w1[j, i]^2 * w2[k, j]^2.
    expected = float(np.sum((w2.astype(np.float64) ** 2) @ (w1.astype(np.float64) ** 2)))
    assert compute(ctx, ["path_norm"])["path_norm"] == pytest.approx(expected, rel=1e-5)


def test_path_norm_squares_the_affine_map_of_a_batchnorm_left_unfolded(weights):
    w1, w2 = weights
    net = two_layer(w1, w2)
    bn = nn.BatchNorm1d(5).eval()  # after the ReLU: no layer feeds it directly, so not folded
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for t in (bn.weight, bn.bias, bn.running_mean):
            t.copy_(torch.randn(5, generator=gen))
        bn.running_var.copy_(torch.rand(5, generator=gen) + 0.5)
    net.insert(2, bn)
    ctx = MeasureContext(net, input_shape=(4,), device="cpu")
    gamma, beta = bn.weight.detach().double().numpy(), bn.bias.detach().double().numpy()
    mean, var = bn.running_mean.double().numpy(), bn.running_var.double().numpy()
    a = gamma / np.sqrt(var + bn.eps)
    c = beta - mean * a
    hidden = (w1.astype(np.float64) ** 2) @ np.ones(4)  # squared first layer on all-ones
    expected = float(np.sum((w2.astype(np.float64) ** 2) @ (a**2 * hidden + c**2)))
    assert compute(ctx, ["path_norm"])["path_norm"] == pytest.approx(expected, rel=1e-5)


def test_path_norm_of_a_token_mlp_sets_every_one_hot_unit():
    from gengap.models.mlp import OneHot

    torch.manual_seed(4)
    linear = nn.Linear(3 * 6, 2, bias=False)
    net = nn.Sequential(OneHot(6), nn.Flatten(), linear)
    ctx = MeasureContext(net, input_shape=(3,), device="cpu")
    expected = float((linear.weight.detach().double() ** 2).sum())  # every path: one weight
    assert compute(ctx, ["path_norm"])["path_norm"] == pytest.approx(expected, rel=1e-6)


def test_measures_over_a_zero_margin_are_infinite():
    net = nn.Sequential(nn.Linear(4, 3, bias=False))
    with torch.no_grad():
        net[0].weight.zero_()  # every logit 0: every margin 0
    x, y = torch.randn(20, 4), torch.randint(0, 3, (20,))
    ctx = MeasureContext(net, x_train=x, y_train=y, device="cpu")
    values = compute(ctx, ["margin", "inverse_margin", "prod_of_spec_over_margin",
                           "path_norm_over_margin"])
    assert values["margin"] == 0
    assert all(values[k] == float("inf") for k in
               ("inverse_margin", "prod_of_spec_over_margin", "path_norm_over_margin"))


def test_margin_is_the_tenth_percentile_and_feeds_the_margin_measures(weights):
    w1, w2 = weights
    net = two_layer(w1, w2)
    x = torch.randn(50, 4, generator=torch.Generator().manual_seed(1))
    y = torch.randint(0, 3, (50,), generator=torch.Generator().manual_seed(2))
    ctx = MeasureContext(net, x_train=x, y_train=y, device="cpu")
    values = compute(ctx, ["margin", "inverse_margin", "cross_entropy", "path_norm",
                           "path_norm_over_margin"])
    logits = net(x).detach().double().numpy()
    true = logits[np.arange(50), y.numpy()]
    masked = logits.copy()
    masked[np.arange(50), y.numpy()] = -np.inf
    margins = np.sort(true - masked.max(1))
    gamma = abs(margins[50 // 10 - 1])
    assert values["margin"] == pytest.approx(gamma, rel=1e-6)
    assert values["inverse_margin"] == pytest.approx(1 / gamma**2, rel=1e-6)
    assert values["path_norm_over_margin"] == pytest.approx(
        values["path_norm"] / gamma**2, rel=1e-9
    )
    log_probs = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    assert values["cross_entropy"] == pytest.approx(-log_probs[np.arange(50), y.numpy()].mean(),
                                                    rel=1e-6)


def test_folding_batchnorm_leaves_outputs_unchanged():
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
        nn.Flatten(), nn.Linear(4 * 6 * 6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3),
    )
    net.train()
    for _ in range(3):  # give the running statistics non-trivial values
        net(torch.randn(16, 1, 6, 6) * 3 + 1)
    with torch.no_grad():
        for bn in (net[1], net[5]):
            bn.weight.uniform_(0.5, 2.0)
            bn.bias.uniform_(-1, 1)
    net.eval()
    x = torch.randn(10, 1, 6, 6)
    folded = fold_batchnorm(net, x[:2])
    assert not any(isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d) for m in folded.modules())
    torch.testing.assert_close(folded(x), net(x), rtol=1e-5, atol=1e-5)


def test_fold_scales_and_the_forward_copy():
    """The factor each folded layer's weight was multiplied by is the BatchNorm's
    γ/√(var + ε), and ``forward_copy`` computes the model's function with channels-last
    kernels on the CPU; a layer perturbed there as ``scale · (W + U)`` computes what ``W + U``
    followed by the BatchNorm does (how module criticality perturbs it)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 5, 3, bias=False), nn.BatchNorm2d(5), nn.ReLU(),
                        nn.Conv2d(5, 3, 1), nn.Flatten(), nn.Linear(3 * 4 * 4, 2)).double()
    net.train()
    net(torch.randn(32, 2, 6, 6, dtype=torch.float64) * 2 + 1)
    with torch.no_grad():
        net[1].weight.uniform_(0.5, 2.0)
    net.eval()
    x = torch.randn(7, 2, 6, 6, dtype=torch.float64)
    folded, scales = fold_batchnorm_with_scales(net, x[:2])
    bn = net[1]
    expected = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach().reshape(-1, 1, 1, 1)
    assert set(scales) == {"0"}
    torch.testing.assert_close(scales["0"], expected, rtol=0, atol=0)
    torch.testing.assert_close(folded[0].weight, net[0].weight * expected)
    work, _ = forward_copy(net, x[:2])
    assert work[0].weight.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(work(x), net(x), rtol=1e-12, atol=1e-12)
    noise = torch.randn_like(net[0].weight)
    with torch.no_grad():
        work[0].weight.copy_((net[0].weight + noise) * scales["0"])
        net[0].weight.add_(noise)
    torch.testing.assert_close(work(x), net(x), rtol=1e-12, atol=1e-12)


class SharedOutput(nn.Module):
    """A conv whose output feeds a BatchNorm and, unnormalized, a skip connection: folding the
    BatchNorm into the conv would change the skip."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn = nn.Conv2d(2, 2, 3, padding=1), nn.BatchNorm2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return (self.bn(out) + out).flatten(1)


def randomized_batchnorm(net: nn.Module, shape: tuple[int, ...]) -> nn.Module:
    net.train()
    for _ in range(3):  # running statistics away from (0, 1)
        net(torch.randn(16, *shape) * 2 + 0.5)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 2.0)
                m.bias.uniform_(-1, 1)
    return net.eval()


def test_folding_follows_the_dataflow_and_keeps_the_function():
    """Folding reads which layer feeds which BatchNorm from a forward pass, not from the order
    the modules were registered in. In gengap's pre-activation ResNet a block's first BN is
    registered right after the previous block's last conv, but normalizes the sum of both
    branches: the registration order folded it into that conv and changed the network's
    outputs by more than their own size. Each block's second BN, fed by its first conv, is
    folded; a BN whose conv output is used elsewhere too is not."""
    from gengap.models import build
    from gengap.specs import ArchSpec

    torch.manual_seed(0)
    resnet = randomized_batchnorm(build(ArchSpec(family="resnet"), (3, 16, 16), 10), (3, 16, 16))
    x = torch.randn(6, 3, 16, 16)
    folded, scales = fold_batchnorm_with_scales(resnet, x[:2])
    torch.testing.assert_close(folded(x), resnet(x), rtol=1e-4, atol=1e-4)
    blocks = [n for n, m in resnet.named_modules() if type(m).__name__ == "PreActBlock"]
    assert blocks and sorted(scales) == sorted(f"{b}.conv1" for b in blocks)
    for b in blocks:
        assert isinstance(folded.get_submodule(f"{b}.bn2"), nn.Identity)
        assert isinstance(folded.get_submodule(f"{b}.bn1"), nn.BatchNorm2d)
    shared = randomized_batchnorm(SharedOutput(), (2, 4, 4))
    x = torch.randn(5, 2, 4, 4)
    kept, scales = fold_batchnorm_with_scales(shared, x[:2])
    assert scales == {} and isinstance(kept.bn, nn.BatchNorm2d)
    torch.testing.assert_close(kept(x), shared(x))
    with pytest.raises(GengapError, match="needs an example input"):
        fold_batchnorm(shared)


def test_a_resnets_initial_and_final_weights_fold_alike():
    """Which layer takes which BatchNorm depends on the architecture alone (checked with
    random BatchNorm statistics): at initialization a BN is nearly the identity, and a check
    on the model itself would have let the initial weights fold where the trained ones do not.
    Both folded networks compute their model's function."""
    from gengap.models import build
    from gengap.specs import ArchSpec

    torch.manual_seed(1)
    init = build(ArchSpec(family="resnet"), (3, 16, 16), 10).eval()
    final = randomized_batchnorm(build(ArchSpec(family="resnet"), (3, 16, 16), 10), (3, 16, 16))
    x = torch.randn(6, 3, 16, 16)
    ctx = MeasureContext(final, init, x_train=x, y_train=torch.arange(6) % 10, device="cpu")
    assert ctx.batchnorm_folds and all(f[0].endswith("conv1") for f in ctx.batchnorm_folds)
    torch.testing.assert_close(ctx.folded(x), final(x), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(ctx.folded_init(x), init(x), rtol=1e-4, atol=1e-4)
    by_hand = sum(float(((a.weight - b.weight) ** 2).sum().detach()) for a, b in zip(
        [m for m in ctx.folded.modules() if isinstance(m, nn.Conv2d | nn.Linear)],
        [m for m in ctx.folded_init.modules() if isinstance(m, nn.Conv2d | nn.Linear)],
        strict=True))
    value = compute(ctx, ["frobenius_distance"])["frobenius_distance"]
    assert value == pytest.approx(by_hand, rel=1e-6)


def test_the_forward_copy_of_a_3d_convolutional_network():
    """Channels-last applies to 2-D convolution kernels only: a Conv3d network's logits pass
    runs (on its folded copy) and gives the model's cross-entropy."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv3d(1, 3, 3, padding=1), nn.BatchNorm3d(3), nn.ReLU(),
                        nn.Conv3d(3, 4, 1), nn.AdaptiveAvgPool3d(1), nn.Flatten()).eval()
    x, y = torch.randn(8, 1, 4, 4, 4), torch.arange(8) % 4
    ctx = MeasureContext(net, x_train=x, y_train=y, device="cpu")
    got = compute(ctx, ["cross_entropy"])["cross_entropy"]
    with torch.no_grad():
        expected = float(nn.functional.cross_entropy(net(x), y))
    assert got == pytest.approx(expected, rel=1e-5)
    assert ctx.batchnorm_folds == [("0", "1")]


def test_measures_that_need_data_say_so():
    ctx = MeasureContext(nn.Sequential(nn.Linear(2, 2)), input_shape=(2,), device="cpu")
    with pytest.raises(GengapError, match="needs the training data"):
        compute(ctx, ["margin"])
    with pytest.raises(GengapError, match="needs the initial weights"):
        compute(ctx, ["frobenius_distance"])


def test_a_measure_that_does_not_apply_gives_nan_and_the_rest_still_compute():
    # augmentation_penalty augments images; on vector inputs it does not apply.
    net = nn.Sequential(nn.Linear(4, 3))
    x = torch.randn(30, 4, generator=torch.Generator().manual_seed(0))
    y = torch.randint(0, 3, (30,), generator=torch.Generator().manual_seed(1))
    values = compute(MeasureContext(net, x_train=x, y_train=y, device="cpu"),
                     ["augmentation_penalty", "margin"])
    assert np.isnan(values["augmentation_penalty"])
    assert np.isfinite(values["margin"])
