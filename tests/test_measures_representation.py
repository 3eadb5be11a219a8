"""Representation measures (PGDL winners): Davies–Bouldin against scikit-learn, early-feature
hooks against a hand computation, label-wise mixup on a linear model (convex classes stay
correct), normalized margins against their formula, augmentation penalties of an invariant
model, and label variation on a hand-made graph."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats
from sklearn.metrics import davies_bouldin_score
from torch import nn

from gengap.measures import MeasureContext, compute
from gengap.measures.augment import AUGMENTATIONS, crop_resize, cutout, flip, sobel
from gengap.measures.features import early_features
from gengap.measures.representation import (
    davies_bouldin_rounds,
    label_variation_score,
    normalized_margins,
    pairwise_midpoints,
)
from gengap.models.mlp import OneHot

REPRESENTATION = ["davies_bouldin", "mixup_accuracy", "db_mixup", "mixup_margin",
                  "augmentation_penalty", "label_variation"]


pytestmark = pytest.mark.usefixtures("one_thread")


def blobs(n: int = 300, classes: int = 3, dim: int = 6, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    centers = torch.randn(classes, dim, generator=gen) * 4
    return centers[y] + torch.randn(n, dim, generator=gen), y


def test_davies_bouldin_rounds_equal_sklearn() -> None:
    x, y = blobs()
    gen = torch.Generator().manual_seed(3)
    ours = davies_bouldin_rounds(x.double(), y, rounds=4, size=90, gen=gen)
    gen = torch.Generator().manual_seed(3)
    expected = []
    for _ in range(4):
        idx = torch.randperm(len(y), generator=gen)[:90]
        expected.append(davies_bouldin_score(x[idx].double().numpy(), y[idx].numpy()))
    assert ours == pytest.approx(np.mean(expected), rel=1e-12)


def test_early_features_are_the_first_activation_max_pooled() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                        nn.Conv2d(4, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(4, 3)).eval()
    x = torch.randn(5, 1, 8, 8)
    feats = early_features(net, x, torch.device("cpu"), batch_size=2)
    expected = nn.functional.max_pool2d(net[2](net[1](net[0](x))), 4).flatten(1).double()
    torch.testing.assert_close(feats, expected)


@pytest.mark.parametrize("passed_on", [nn.Identity(), nn.Dropout(0.5)])
def test_early_features_are_read_after_a_module_that_passes_its_input_on(passed_on) -> None:
    """An optional BatchNorm switched off is often an Identity: the features were read there,
    before the ReLU (mixup_margin 12.7 % off on a small trained CNN with one)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 8), passed_on, nn.ReLU(), nn.Linear(8, 3)).eval()
    x = torch.randn(5, 6)
    feats = early_features(net, x, torch.device("cpu"), batch_size=2)
    assert (net[0](x) < 0).any()  # the ReLU changes something
    torch.testing.assert_close(feats, torch.relu(net[0](x)).double())


def test_early_features_of_a_transformer_come_from_a_layer_that_runs() -> None:
    """The attention's output projection is registered first but never called as a module
    (MultiheadAttention reads its weight): the early features are the first feed-forward
    layer's activation, which the forward pass does call."""
    from gengap.models import build
    from gengap.specs import ArchSpec

    torch.manual_seed(0)
    net = build(ArchSpec(family="transformer", width=8, depth=1, heads=2), (5,), 3, 11).eval()
    x = torch.randint(0, 11, (6, 5))
    feats = early_features(net, x, torch.device("cpu"), batch_size=4)
    assert feats.shape[0] == 6 and torch.isfinite(feats).all()
    y = torch.arange(6) % 3
    values = compute(MeasureContext(net, x_train=x, y_train=y, device="cpu"), ["davies_bouldin"])
    assert np.isfinite(values["davies_bouldin"])


def linear_model_on_blobs():
    x, y = blobs()
    model = nn.Linear(x.shape[1], 3)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(300):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model, x, y


def test_mixup_of_a_linear_classifier_that_fits_its_classes_is_perfect() -> None:
    model, x, y = linear_model_on_blobs()
    assert bool((model(x).argmax(1) == y).all())
    values = compute(MeasureContext(model, x_train=x, y_train=y, device="cpu"),
                     ["davies_bouldin", "mixup_accuracy", "db_mixup"])
    # midpoints of points inside one convex decision region stay in it
    assert values["mixup_accuracy"] == 1.0
    assert values["db_mixup"] == 0.0
    assert values["davies_bouldin"] > 0


def test_pairwise_midpoints() -> None:
    x = torch.tensor([[0.0], [2.0], [4.0]])
    assert pairwise_midpoints(x).squeeze(1).tolist() == [1.0, 2.0, 3.0]


def test_normalized_margins_follow_the_formula() -> None:
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3)).double()
    x = torch.randn(40, 4, dtype=torch.float64)
    y = torch.randint(0, 3, (40,))
    got = normalized_margins(net, x, y, torch.device("cpu"), batch_size=16)
    assert all(p.grad is None for p in net.parameters())
    h = torch.relu(net[0](x)).detach()
    logits = net[2](h).detach()
    w2 = net[2].weight.detach()
    # the variances pooled over all 40 examples (not per batch of 16), population variance
    spread = stats.trim_mean(h.var(dim=0, unbiased=False).numpy(), 0.05) ** 0.5
    for i in range(40):
        top = logits[i].argsort(descending=True)
        a, b = (top[0], top[1]) if top[0] == y[i] else (y[i], top[0])
        grad = w2[a] - w2[b]  # h is the ReLU's output, so ∂f/∂h is a row of W2
        expected = float(logits[i, a] - logits[i, b]) / float(grad.norm()) / spread
        assert float(got[i]) == pytest.approx(expected, rel=1e-6)
        assert (float(got[i]) < 0) == bool(top[0] != y[i])


def test_augmentations() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 2, 8, 8)
    torch.testing.assert_close(flip(flip(x, gen), gen), x)
    assert crop_resize(x, gen).shape == x.shape
    assert float(sobel(torch.ones(1, 1, 6, 6), gen).abs().max()) == 0.0
    erased = cutout(torch.ones(4, 2, 8, 8), gen)
    assert ((erased == 0).sum(dim=(1, 2, 3)) == 2 * 2 * 2).all()  # a 2x2 square per channel
    assert len(AUGMENTATIONS) == 7


def test_a_constant_model_pays_no_augmentation_penalty() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
    with torch.no_grad():
        model[1].weight.zero_()
        model[1].bias.copy_(torch.tensor([0.5, 0.1, -1.0]))
    x = torch.randn(50, 1, 8, 8)
    y = torch.randint(0, 3, (50,))
    values = compute(MeasureContext(model, x_train=x, y_train=y, device="cpu"),
                     ["augmentation_penalty"])
    assert values["augmentation_penalty"] == 0.0


def test_augmentation_penalty_is_the_mean_of_its_definition(monkeypatch) -> None:
    """With the deterministic augmentations only (flip, Sobel), per example: |max p − p′ at
    the predicted class| when the prediction survives, else the augmentation's λ; averaged
    over every example (fewer than the 2,048 sampled)."""
    from gengap.measures import representation

    monkeypatch.setattr(representation, "AUGMENTATIONS", [(flip, 6.0), (sobel, 3.0)])
    torch.manual_seed(1)
    net = nn.Sequential(nn.Conv2d(2, 5, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                        nn.Flatten(), nn.Linear(20, 4)).double()
    x = torch.randn(70, 2, 6, 6, dtype=torch.float64)
    y = torch.randint(0, 4, (70,))
    with torch.no_grad():
        p = torch.softmax(net(x), dim=1)
        conf, pred = p.max(dim=1)
        expected = torch.zeros(70, dtype=torch.float64)
        for augmented, lam in ((x.flip(-1), 6.0), (sobel(x, torch.Generator()), 3.0)):
            q = torch.softmax(net(augmented), dim=1)
            kept = q.argmax(dim=1) == pred
            expected += torch.where(kept, (conf - q[torch.arange(70), pred]).abs(), lam)
    assert 0 < float(expected.mean()) < 9  # some predictions change, some survive
    got = compute(MeasureContext(net, x_train=x, y_train=y, device="cpu", batch_size=32),
                  ["augmentation_penalty"])["augmentation_penalty"]
    assert got == pytest.approx(float(expected.mean()), rel=1e-12)


def test_label_variation_on_a_hand_made_graph() -> None:
    # two tight pairs far apart: the 1-NN graph is the edges 0-1 and 2-3 (degree 1)
    feats = torch.tensor([[1.0, 0.0], [1.0, 0.01], [0.0, 1.0], [0.01, 1.0]])
    labels = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    # tr(Yᵀ L Y) = Σ_edges ‖y_i − y_j‖² = 0 + 2; divided by 4n = 16
    assert label_variation_score(feats, labels) == pytest.approx(2 / 16)


def test_label_variation_graph_is_directed_as_the_vpm_code() -> None:
    # 0 and 1 are each other's nearest; 2's nearest is 1, but 1's is 0: the edge 2 -> 1 only
    angles = torch.tensor([0.0, 0.01, 0.05])
    feats = torch.stack([angles.cos(), angles.sin()], 1)
    labels = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    # out-degree 1 everywhere, L = I - A: Σ‖y_i‖² − Σ_i y_i·y_nn(i) = 3 − 2, over 4n = 12
    assert label_variation_score(feats, labels) == pytest.approx(1 / 12)


def test_mixing_measures_do_not_apply_to_tokens_or_tiny_sets() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(OneHot(5), nn.Flatten(), nn.Linear(15, 3))
    tokens, y = torch.randint(0, 5, (30, 3)), torch.arange(30) % 3
    names = ["mixup_accuracy", "mixup_margin", "label_variation", "db_mixup"]
    values = compute(MeasureContext(net, x_train=tokens, y_train=y, device="cpu"), names)
    assert all(np.isnan(values[n]) for n in names)
    dense = nn.Sequential(nn.Linear(4, 5))  # one example of each of 5 classes
    few = MeasureContext(dense, x_train=torch.randn(5, 4), y_train=torch.arange(5), device="cpu")
    values = compute(few, ["davies_bouldin", "mixup_accuracy"])
    assert np.isnan(values["davies_bouldin"]) and np.isnan(values["mixup_accuracy"])


def test_every_representation_measure_runs_on_a_small_cnn() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, stride=2, padding=1), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    x = torch.randn(90, 1, 8, 8)
    y = torch.arange(90) % 3
    values = compute(MeasureContext(net, x_train=x, y_train=y, device="cpu"), REPRESENTATION)
    assert set(values) == set(REPRESENTATION)
    assert all(np.isfinite(v) for v in values.values())
    assert values["db_mixup"] == pytest.approx(
        values["davies_bouldin"] * (1 - values["mixup_accuracy"]))
    assert 0 <= values["mixup_accuracy"] <= 1 and values["label_variation"] >= 0
