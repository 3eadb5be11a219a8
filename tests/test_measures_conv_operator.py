"""The exact operator norm of a convolution as it acts (padding, stride, dilation, groups)
against its matrix written out entry by entry in numpy, and the ``_op`` measures on a strided,
zero-padded network."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from gengap.measures import MeasureContext, compute
from gengap.measures.conv_operator import conv_operator_norm
from gengap.measures.conv_spectrum import conv_spectral_norm_fft


def zero_padded_matrix(conv: nn.Conv2d, size: tuple[int, int],
                       weight: torch.Tensor | None = None) -> np.ndarray:
    """The zero-padded convolution's matrix, built from its definition tap by tap (no torch
    convolution): out[o, i, j] = Σ_{c,a,b} W[o, c, a, b] x[g·C + c, i·s − p + a·d,
    j·s − p + b·d], g the group of o and C its input channels."""
    w = (conv.weight if weight is None else weight).detach().double().numpy()
    c_out, c_per, kh, kw = w.shape
    (sh, sw), (ph, pw), (dh, dw) = conv.stride, conv.padding, conv.dilation
    h, wd = size
    oh = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    ow = (wd + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    per_group_out = c_out // conv.groups
    matrix = np.zeros((c_out * oh * ow, conv.in_channels * h * wd))
    for o in range(c_out):
        first = (o // per_group_out) * c_per
        for i in range(oh):
            for j in range(ow):
                row = (o * oh + i) * ow + j
                for c in range(c_per):
                    for a in range(kh):
                        for b in range(kw):
                            y, x = i * sh - ph + a * dh, j * sw - pw + b * dw
                            if 0 <= y < h and 0 <= x < wd:
                                matrix[row, ((first + c) * h + y) * wd + x] += w[o, c, a, b]
    return matrix


CASES = [  # (in, out, kernel, stride, padding, dilation, groups, input size)
    (2, 3, 3, 2, 1, 1, 1, (7, 7)),
    (2, 3, 3, 2, 0, 1, 1, (8, 6)),
    (3, 2, 3, 1, 1, 1, 1, (5, 4)),
    (2, 4, 5, 3, 2, 1, 1, (9, 8)),
    (2, 2, 3, 2, 2, 2, 1, (7, 9)),
    (4, 4, 3, 2, 1, 1, 2, (6, 6)),
    (3, 4, 1, 2, 0, 1, 1, (5, 5)),
    (3, 4, 1, 1, 1, 1, 1, (4, 4)),  # 1x1 with padding: not the pointwise shortcut
]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dense", [True, False], ids=["dense", "lanczos"])
def test_operator_norm_equals_the_matrix_written_out(case, dense):
    c_in, c_out, k, s, p, d, g, size = case
    torch.manual_seed(sum(case[:7]))
    conv = nn.Conv2d(c_in, c_out, k, stride=s, padding=p, dilation=d, groups=g)
    expected = np.linalg.norm(zero_padded_matrix(conv, size), 2)
    got = conv_operator_norm(conv, size, dense_entries=1 << 30 if dense else 0)
    assert got == pytest.approx(expected, rel=1e-9)


def test_a_strided_norm_is_below_the_fft_upper_bound():
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 8, 3, stride=2, padding=1)
    exact = conv_operator_norm(conv, (14, 14))
    assert exact == pytest.approx(np.linalg.norm(zero_padded_matrix(conv, (14, 14)), 2),
                                  rel=1e-9)
    assert exact < 0.9 * conv_spectral_norm_fft(conv.weight, (14, 14))


@pytest.mark.parametrize("dense", [True, False], ids=["dense", "lanczos"])
def test_a_circular_stride_one_convolution_has_the_fft_norm(dense):
    torch.manual_seed(4)
    conv = nn.Conv2d(3, 5, 3, padding=1, padding_mode="circular")
    got = conv_operator_norm(conv, (6, 7), dense_entries=1 << 30 if dense else 0)
    assert got == pytest.approx(conv_spectral_norm_fft(conv.weight, (6, 7)), rel=1e-9)


def test_other_dimensions_and_a_zero_kernel():
    torch.manual_seed(5)
    for conv, size in ((nn.Conv1d(3, 4, 3, stride=2, padding=1), (11,)),
                       (nn.Conv3d(2, 3, 3, stride=2, padding=1), (5, 4, 5))):
        dense = conv_operator_norm(conv, size)
        assert conv_operator_norm(conv, size, dense_entries=0) == pytest.approx(dense, rel=1e-9)
        # σ_max is at least the response to any one unit input, and at most the FFT bound
        basis = torch.zeros(1, conv.in_channels, *size, dtype=torch.float64)
        basis.view(-1)[basis.numel() // 2] = 1
        one = float(conv._conv_forward(basis, conv.weight.detach().double(), None).norm())
        assert one <= dense * (1 + 1e-12) and dense <= conv_spectral_norm_fft(
            conv.weight, size) * (1 + 1e-12)
    conv = nn.Conv2d(2, 2, 3, stride=2)
    assert conv_operator_norm(conv, (6, 6), torch.zeros_like(conv.weight)) == 0.0


def strided_network(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(2, 3, 3, stride=2, padding=1, bias=False), nn.ReLU(),
                         nn.Flatten(), nn.Linear(3 * 4 * 4, 4, bias=False))


def test_op_measures_use_each_layers_own_norm():
    net, init = strided_network(0), strided_network(1)
    x = torch.randn(40, 2, 7, 7, generator=torch.Generator().manual_seed(2))
    y = torch.randint(0, 4, (40,), generator=torch.Generator().manual_seed(3))
    ctx = MeasureContext(net, init_model=init, x_train=x, y_train=y, device="cpu")
    names = ["prod_of_spec_op", "sum_of_spec_op", "fro_over_spec_op", "dist_spec_init_op",
             "spec_init_main_op", "log_prod_of_spec_over_margin_op", "prod_of_spec_fft"]
    got = compute(ctx, names + ["margin"])
    conv_sq = np.linalg.norm(zero_padded_matrix(net[0], (7, 7)), 2) ** 2
    lin = net[3].weight.detach().double().numpy()
    lin_sq = np.linalg.norm(lin, 2) ** 2
    delta = net[0].weight.detach().double() - init[0].weight.detach().double()
    delta_conv_sq = np.linalg.norm(zero_padded_matrix(net[0], (7, 7), delta), 2) ** 2
    delta_lin = lin - init[3].weight.detach().double().numpy()
    fro = [float((net[0].weight.detach().double() ** 2).sum()), float((lin ** 2).sum())]
    dist_fro = [float((delta ** 2).sum()), float((delta_lin ** 2).sum())]
    gamma2 = got["margin"] ** 2
    assert got["prod_of_spec_op"] == pytest.approx(conv_sq * lin_sq, rel=1e-9)
    assert got["sum_of_spec_op"] == pytest.approx(2 * math.sqrt(conv_sq * lin_sq), rel=1e-9)
    assert got["fro_over_spec_op"] == pytest.approx(fro[0] / conv_sq + fro[1] / lin_sq,
                                                    rel=1e-9)
    assert got["dist_spec_init_op"] == pytest.approx(
        delta_conv_sq + np.linalg.norm(delta_lin, 2) ** 2, rel=1e-9)
    assert got["spec_init_main_op"] == pytest.approx(
        conv_sq * lin_sq / gamma2 * (dist_fro[0] / conv_sq + dist_fro[1] / lin_sq), rel=1e-6)
    assert got["log_prod_of_spec_over_margin_op"] == pytest.approx(
        math.log(conv_sq * lin_sq / gamma2), rel=1e-6)
    assert got["prod_of_spec_op"] < got["prod_of_spec_fft"]  # the FFT's is an upper bound


def test_op_and_fft_measures_run_on_a_float64_network():
    """The probe that finds each convolution's input size runs in the model's own dtype (a
    float32 probe made a float64 network's biased convolution fail)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                        nn.Linear(4 * 8 * 8, 3))
    x = torch.randn(32, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    y = torch.randint(0, 3, (32,), generator=torch.Generator().manual_seed(2))
    names = ["prod_of_spec_op", "prod_of_spec_fft"]
    single = compute(MeasureContext(net, None, x, y, device="cpu"), names)
    double = compute(MeasureContext(net.double(), None, x.double(), y, device="cpu"), names)
    for name in names:
        assert double[name] == pytest.approx(single[name], rel=1e-5), name
