"""Each architecture family: parameter counts against closed forms, output shapes, bad input."""

from __future__ import annotations

import pytest
import torch

from gengap.errors import GengapError
from gengap.models import build, families
from gengap.specs import ArchSpec


def count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_every_required_family_is_registered():
    assert {"mlp", "cnn", "nin", "vgg", "resnet", "transformer"} <= set(families.names())


@pytest.mark.parametrize("side", [28, 8])
def test_small_cnn_zoo_network_has_4970_parameters(side: int):
    model = build(ArchSpec(family="cnn"), (1, side, side), 10)
    # 3x3 conv 1->16, two 3x3 convs 16->16, dense 16->10 (Unterthiner et al. 2020).
    assert count(model) == (9 * 16 + 16) + 2 * (9 * 16 * 16 + 16) + (16 * 10 + 10) == 4970
    assert model(torch.randn(2, 1, side, side)).shape == (2, 10)


def test_mlp_parameter_count():
    w, d, c = 100, 2, 10
    model = build(ArchSpec(family="mlp", width=w, depth=d), (40,), c)
    assert count(model) == (40 * w + w) + (d - 1) * (w * w + w) + (w * c + c)
    bn = build(ArchSpec(family="mlp", width=w, depth=d, batch_norm=True), (40,), c)
    assert count(bn) == 40 * w + 2 * w + (d - 1) * (w * w + 2 * w) + (w * c + c)


def test_nin_parameter_count_and_shape():
    w, d, c = 24, 3, 10
    model = build(ArchSpec(family="nin", width=w, depth=d), (3, 32, 32), c)
    # Per block: 3x3 stride-2 conv and two 1x1 convs, no bias (batch norm follows each), with
    # batch norm's scale and shift; then a 1x1 conv to the classes with bias.
    first = 3 * w * 9 + 2 * w + 2 * (w * w + 2 * w)
    later = w * w * 9 + 2 * w + 2 * (w * w + 2 * w)
    assert count(model) == first + (d - 1) * later + (w * c + c)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, c)
    bn_layers = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(bn_layers) == 3 * d  # batch norm is on by default
    plain = build(ArchSpec(family="nin", width=w, depth=1, batch_norm=False), (3, 32, 32), c)
    assert count(plain) == (3 * w * 9 + w) + 2 * (w * w + w) + (w * c + c)


def test_vgg_parameter_count_follows_pgdl_layout():
    spec = ArchSpec(family="vgg", width=64, depth=3, dense_layers=2, dense_width=128)
    model = build(spec, (3, 32, 32), 10)
    filters = [16, 32, 64]  # the last block has `width` filters, earlier ones half each
    convs, c_in = 0, 3
    for f in filters:
        convs += (c_in * f * 9 + f) + (f * f * 9 + f)
        c_in = f
    dense = (64 * 4 * 4 * 128 + 128) + (128 * 128 + 128) + (128 * 10 + 10)
    assert count(model) == convs + dense
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    with pytest.raises(GengapError, match="at least 16 pixels"):
        build(ArchSpec(family="vgg", depth=4), (1, 8, 8), 10)


def test_resnet_parameter_count():
    w, d, c = 8, 2, 10
    model = build(ArchSpec(family="resnet", width=w, depth=d), (3, 16, 16), c)
    expected = 3 * w * 9 + w  # stem
    c_in = w
    for stage in range(3):
        f = w * 2**stage
        for _ in range(d):
            expected += 2 * c_in + c_in * f * 9 + 2 * f + f * f * 9  # bn1, conv1, bn2, conv2
            if c_in != f:
                expected += c_in * f  # 1x1 shortcut
            c_in = f
    expected += 2 * c_in + (c_in * c + c)  # final norm and dense
    assert count(model) == expected
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, c)


def test_transformer_on_tokens():
    w, d, vocab, seq, c = 16, 2, 11, 7, 5
    model = build(ArchSpec(family="transformer", width=w, depth=d, heads=4), (seq,), c, vocab)
    per_layer = 12 * w * w + 13 * w  # attention, 4w feed-forward, two layer norms
    assert count(model) == vocab * w + seq * w + d * per_layer + 2 * w + (w * c + c)
    tokens = torch.randint(0, vocab, (3, seq))
    assert model(tokens).shape == (3, c)


@pytest.mark.parametrize(
    ("spec", "shape", "vocab", "problem"),
    [
        (ArchSpec(family="transformer"), (1, 8, 8), None, "needs token inputs"),
        (ArchSpec(family="transformer", width=10, heads=4), (5,), 7, "not divisible"),
        (ArchSpec(family="cnn"), (40,), None, "needs image inputs"),
        (ArchSpec(family="nin"), (5,), 7, "token data needs 'transformer'"),
        (ArchSpec(family="nope"), (5,), None, "unknown architecture family 'nope'"),
    ],
)
def test_bad_combinations_are_one_line_errors(spec, shape, vocab, problem):
    with pytest.raises(GengapError, match=problem):
        build(spec, shape, 3, vocab)
