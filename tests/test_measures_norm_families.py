"""Jiang et al.'s norm and margin families (reshaped and FFT spectral norms) against numpy on a
hand-built conv + linear network, and the exact conv spectral norm against the explicit
convolution matrix."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gengap.measures import MeasureContext, compute
from gengap.measures.conv_spectrum import conv_input_sizes, conv_spectral_norm_fft


def explicit_conv_matrix(conv: nn.Conv2d, size: tuple[int, int]) -> np.ndarray:
    """The convolution as a matrix: column j is the layer (bias off) applied to basis input j."""
    c_in = conv.in_channels
    n_in = c_in * size[0] * size[1]
    basis = torch.eye(n_in, dtype=torch.float64).reshape(n_in, c_in, *size)
    pad = conv.padding if isinstance(conv.padding, tuple) else (conv.padding,) * 2
    padded = F.pad(basis, (pad[1], pad[1], pad[0], pad[0]), mode="circular")
    out = F.conv2d(padded, conv.weight.detach().double(), stride=conv.stride,
                   dilation=conv.dilation)
    return out.reshape(n_in, -1).T.numpy()


@pytest.mark.parametrize("kernel,size", [(3, (5, 5)), (3, (4, 6)), (5, (7, 7)), (3, (2, 2)),
                                         (5, (3, 2))])
def test_fft_spectral_norm_equals_the_explicit_convolution_matrix(kernel, size):
    torch.manual_seed(kernel + size[1])
    conv = nn.Conv2d(2, 3, kernel, padding=kernel // 2, padding_mode="circular", bias=False)
    expected = np.linalg.norm(explicit_conv_matrix(conv, size), 2)
    assert conv_spectral_norm_fft(conv.weight, size) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("dilation,size", [((2, 2), (8, 8)), ((2, 1), (6, 5)), ((3, 3), (6, 9))])
def test_fft_spectral_norm_of_a_dilated_convolution(dilation, size):
    # (dilation d along an axis of n with gcd(d, n) = 1 only permutes the frequencies: sizes
    # with a common factor are where ignoring it shows)
    torch.manual_seed(1)
    pad = tuple(d * 1 for d in dilation)  # keeps the size: (3 - 1) * d / 2
    conv = nn.Conv2d(2, 3, 3, padding=pad, dilation=dilation, padding_mode="circular",
                     bias=False)
    with torch.no_grad():  # taps summing to 0: the largest singular value is not at f = 0,
        conv.weight.sub_(conv.weight.mean((2, 3), keepdim=True))  # where dilation changes nothing
    expected = np.linalg.norm(explicit_conv_matrix(conv, size), 2)
    assert conv_spectral_norm_fft(conv.weight, size, dilation=dilation) == pytest.approx(
        expected, rel=1e-9)
    assert conv_spectral_norm_fft(conv.weight, size) != pytest.approx(expected, rel=1e-3)


def test_fft_spectral_norm_of_a_grouped_convolution():
    torch.manual_seed(3)
    conv = nn.Conv2d(4, 4, 3, padding=1, padding_mode="circular", groups=2, bias=False)
    full = torch.zeros(4, 4, 3, 3)
    full[:2, :2], full[2:, 2:] = conv.weight[:2].detach(), conv.weight[2:].detach()
    dense = nn.Conv2d(4, 4, 3, padding=1, padding_mode="circular", bias=False)
    with torch.no_grad():
        dense.weight.copy_(full)
    expected = np.linalg.norm(explicit_conv_matrix(dense, (5, 5)), 2)
    assert conv_spectral_norm_fft(conv.weight, (5, 5), groups=2) == pytest.approx(expected)


def test_conv_input_sizes_are_recorded_after_downsampling():
    net = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.ReLU(),
                        nn.Conv2d(4, 4, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    assert conv_input_sizes(net, (3, 12, 10)) == {"0": (12, 10), "2": (6, 5)}


def network(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1, padding_mode="circular", bias=False), nn.ReLU(),
        nn.Flatten(), nn.Linear(3 * 5 * 5, 4, bias=False),
    )


def test_norm_families_match_numpy():
    net, init = network(0), network(1)
    x = torch.randn(40, 2, 5, 5, generator=torch.Generator().manual_seed(2))
    y = torch.randint(0, 4, (40,), generator=torch.Generator().manual_seed(3))
    ctx = MeasureContext(net, init_model=init, x_train=x, y_train=y, device="cpu")
    got = compute(ctx, "norm,margin")

    conv_w = net[0].weight.detach().double()
    lin_w = net[3].weight.detach().double().numpy()
    conv0 = init[0].weight.detach().double()
    lin0 = init[3].weight.detach().double().numpy()
    mats = [conv_w.reshape(3, -1).numpy(), lin_w]
    deltas = [(conv_w - conv0).reshape(3, -1).numpy(), lin_w - lin0]
    spec = [np.linalg.norm(w, 2) ** 2 for w in mats]
    spec_fft = [np.linalg.norm(explicit_conv_matrix(net[0], (5, 5)), 2) ** 2, spec[1]]
    delta_conv = nn.Conv2d(2, 3, 3, padding=1, padding_mode="circular", bias=False)
    with torch.no_grad():
        delta_conv.weight.copy_(conv_w - conv0)
    dist_spec = [np.linalg.norm(d, 2) ** 2 for d in deltas]
    dist_spec_fft = [np.linalg.norm(explicit_conv_matrix(delta_conv, (5, 5)), 2) ** 2,
                     dist_spec[1]]
    fro = [np.sum(w**2) for w in mats]
    dist_fro = [np.sum(d**2) for d in deltas]
    gamma2 = got["margin"] ** 2
    d = 2

    def family(s: list[float]) -> dict[str, float]:
        prod = math.prod(s)
        return {
            "prod_of_spec": prod,
            "prod_of_spec_over_margin": prod / gamma2,
            "sum_of_spec": d * prod ** (1 / d),
            "sum_of_spec_over_margin": d * (prod / gamma2) ** (1 / d),
            "spec_init_main": prod / gamma2 * sum(f / v for f, v in zip(dist_fro, s, strict=True)),
            "spec_orig_main": prod / gamma2 * sum(f / v for f, v in zip(fro, s, strict=True)),
            "fro_over_spec": sum(f / v for f, v in zip(fro, s, strict=True)),
        }

    expected = {
        **family(spec),
        **{name: family(spec_fft)[name[:-4]] for name in (
            "prod_of_spec_fft", "prod_of_spec_over_margin_fft", "sum_of_spec_fft",
            "sum_of_spec_over_margin_fft", "spec_init_main_fft", "spec_orig_main_fft",
            "fro_over_spec_fft")},
        # a circular stride-1 convolution: as it acts, its norm is the FFT's (Sedghi et al.)
        **{name: family(spec_fft)[name[:-3]] for name in (
            "prod_of_spec_op", "prod_of_spec_over_margin_op", "sum_of_spec_op",
            "sum_of_spec_over_margin_op", "spec_init_main_op", "spec_orig_main_op",
            "fro_over_spec_op")},
        "dist_spec_init": sum(dist_spec),
        "dist_spec_init_fft": sum(dist_spec_fft),
        "dist_spec_init_op": sum(dist_spec_fft),
        "prod_of_fro": math.prod(fro),
        "prod_of_fro_over_margin": math.prod(fro) / gamma2,
        "sum_of_fro": d * math.prod(fro) ** (1 / d),
        "sum_of_fro_over_margin": d * (math.prod(fro) / gamma2) ** (1 / d),
    }
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, rel=1e-6), name
    logged = [
        "log_prod_of_spec", "log_prod_of_spec_over_margin", "log_sum_of_spec",
        "log_sum_of_spec_over_margin", "log_spec_init_main", "log_spec_orig_main",
        "log_prod_of_spec_fft", "log_prod_of_spec_over_margin_fft", "log_sum_of_spec_fft",
        "log_sum_of_spec_over_margin_fft", "log_spec_init_main_fft", "log_spec_orig_main_fft",
        "log_prod_of_spec_op", "log_prod_of_spec_over_margin_op", "log_sum_of_spec_op",
        "log_sum_of_spec_over_margin_op", "log_spec_init_main_op", "log_spec_orig_main_op",
        "log_prod_of_fro", "log_prod_of_fro_over_margin", "log_sum_of_fro",
        "log_sum_of_fro_over_margin",
    ]
    for name in logged:
        assert got[name] == pytest.approx(math.log(expected[name[4:]]), rel=1e-9), name


def test_products_overflow_to_inf_but_their_logs_stay_finite():
    layers = []
    for _ in range(40):
        linear = nn.Linear(3, 3, bias=False)
        with torch.no_grad():
            linear.weight.copy_(torch.eye(3) * 1e5)
        layers += [linear, nn.ReLU()]
    ctx = MeasureContext(nn.Sequential(*layers), input_shape=(3,), device="cpu")
    got = compute(ctx, ["prod_of_fro", "log_prod_of_fro", "sum_of_spec", "log_sum_of_spec"])
    assert got["prod_of_fro"] == math.inf
    assert got["log_prod_of_fro"] == pytest.approx(40 * math.log(3e10))
    assert got["sum_of_spec"] == pytest.approx(40 * 1e10)
    assert got["log_sum_of_spec"] == pytest.approx(math.log(40 * 1e10))


def test_output_entropy_and_vc_dim():
    net = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))
    x = torch.randn(30, 4, generator=torch.Generator().manual_seed(0))
    y = torch.randint(0, 3, (30,), generator=torch.Generator().manual_seed(1))
    ctx = MeasureContext(net, x_train=x, y_train=y, device="cpu")
    got = compute(ctx, ["output_entropy", "vc_dim"])
    p = torch.softmax(net(x).double(), 1).detach().numpy()
    assert got["output_entropy"] == pytest.approx(-(p * np.log(p)).sum(1).mean(), rel=1e-9)
    # d + 2 d ω ln(22 d q): d = 2 layers, ω = 24 + 18 kernel weights, q = 1 (vectors)
    assert got["vc_dim"] == pytest.approx(2 + 2 * 2 * 42 * math.log(22 * 2 * 1), rel=1e-12)
