"""Representation-based measures of the PGDL competition (NeurIPS 2020) winners.

1st place, Natekar & Sharma (arXiv 2012.02775): the Davies–Bouldin index of the class clusters
of early features, the label-wise mixup accuracy, their combination DB × (1 − accuracy), and the
mixup margin. 2nd place, Aithal, Kashyap & Subramanyam (arXiv 2101.06459): the penalty for
predictions that change under data augmentation. 3rd place, Lassance et al. (arXiv 2011.12737):
the variation of (mixed-up) labels on a 1-NN graph of penultimate features.

Sample sizes follow the winners' code (noted per measure); every draw is seeded by
``MeasureOptions.seed``.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import stats
from sklearn.metrics import davies_bouldin_score

from gengap.measures.augment import AUGMENTATIONS
from gengap.measures.context import MeasureContext
from gengap.measures.features import capture, early_features, early_module, last_layer
from gengap.measures.registry import NotApplicable, measure
from gengap.measures.streams import measure_generator

DATA = ("weights", "train_data")
GROUP = "representation"
DB_ROUNDS, DB_SAMPLES = 10, 120  # Natekar: 10 rounds of 3 batches of 40
MIXUP_ROUNDS, MIXUP_PER_CLASS = 10, 10  # Natekar: 10 batches of 10 x classes
MARGIN_SAMPLES = 500  # Natekar: computeOver = 500
AUGMENT_SAMPLES = 2048  # Aithal et al. use 201 batches of 64; gengap a seeded subset
GRAPH_SAMPLES = 500  # Lassance et al.: 500 // classes per class


def _generator(ctx: MeasureContext, salt: int) -> torch.Generator:
    # hashed: seed * 1_000_003 + salt was a small run seed's data order at seed 0
    return measure_generator(ctx.options.seed, f"representation/{salt}")


def davies_bouldin_rounds(
    features: torch.Tensor, labels: torch.Tensor, rounds: int, size: int, gen: torch.Generator
) -> float:
    """Mean over ``rounds`` random subsets of ``size`` points of sklearn's Davies–Bouldin index
    with the labels as clusters (subsets with fewer than 2 classes are skipped)."""
    values = []
    for _ in range(rounds):
        idx = torch.randperm(len(labels), generator=gen)[:size]
        y = labels[idx].numpy()
        if 1 < len(np.unique(y)) < len(y):
            values.append(davies_bouldin_score(features[idx].numpy(), y))
    if not values:
        raise NotApplicable("the Davies–Bouldin index needs subsets of 2 or more classes with "
                            "a class of 2 or more examples")
    return float(np.mean(values))


@measure("davies_bouldin", group=GROUP, needs=DATA, cost="C")
def davies_bouldin(ctx: MeasureContext) -> float:
    """DB = mean_k max_{j≠k} (s_k + s_j)/‖c_k − c_j‖ of the class clusters of early features (the
    first layer's activations, max-pooled 4x4), c the class centroids and s the mean distance
    to them; mean of 10 rounds of 120 training examples (Natekar & Sharma 2020)."""
    x, y = ctx.require_data()
    gen = _generator(ctx, 1)
    idx = torch.randperm(len(y), generator=gen)[: DB_ROUNDS * DB_SAMPLES]
    feats = early_features(ctx.model, x[idx], ctx.device, ctx.batch_size).cpu()
    return davies_bouldin_rounds(feats, y[idx].cpu(), DB_ROUNDS, DB_SAMPLES, gen)


def pairwise_midpoints(x: torch.Tensor) -> torch.Tensor:
    """(x_i + x_j)/2 for every pair i < j."""
    i, j = torch.triu_indices(len(x), len(x), offset=1)
    return (x[i] + x[j]) / 2


@measure("mixup_accuracy", group=GROUP, needs=DATA, cost="C")
def mixup_accuracy(ctx: MeasureContext) -> float:
    """Label-wise mixup accuracy: the share of midpoints (x_i + x_j)/2 of same-class training
    pairs classified as that class; per class over 10 rounds of up to 10 examples per class,
    then the mean over classes (Natekar & Sharma's "veracity ratio"). Not for token inputs."""
    x, y = _real_inputs(ctx, "mixup_accuracy")
    gen = _generator(ctx, 2)
    per_class = []
    with torch.no_grad():
        for c in torch.unique(y).tolist():
            members = (y == c).nonzero().squeeze(1)
            if len(members) < 2:
                continue
            hits = []
            for _ in range(MIXUP_ROUNDS):
                pick = members[torch.randperm(len(members), generator=gen)[:MIXUP_PER_CLASS]]
                mixed = pairwise_midpoints(x[pick].to(ctx.device))
                hits.append(float((ctx.forward_model(mixed).argmax(1) == c).double().mean()))
            per_class.append(np.mean(hits))
    if not per_class:
        raise NotApplicable("label-wise mixup needs a class with at least 2 training examples")
    return float(np.mean(per_class))


@measure("db_mixup", group=GROUP, needs=DATA, cost="C")
def db_mixup(ctx: MeasureContext) -> float:
    """DB × (1 − label-wise mixup accuracy): the winning PGDL entry (Natekar & Sharma 2020)."""
    return ctx.value("davies_bouldin") * (1 - ctx.value("mixup_accuracy"))


def labelwise_mixed(
    x: torch.Tensor, y: torch.Tensor, gen: torch.Generator
) -> torch.Tensor:
    """Each input averaged with a random other input of its class (itself if it is alone)."""
    partner = torch.arange(len(y))
    for c in torch.unique(y).tolist():
        members = (y == c).nonzero().squeeze(1)
        partner[members] = members[torch.randperm(len(members), generator=gen)]
    return (x + x[partner]) / 2


def normalized_margins(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device,
    batch_size: int | None = None,
) -> torch.Tensor:
    """Natekar & Sharma's margins at the early layer h: (f_a − f_b)/‖∇_h f_a − ∇_h f_b‖₂, where
    a, b are the top two classes, or a = y and b the predicted class when the prediction is
    wrong (a negative margin); divided by √(5%-trimmed mean of the features' variances), the
    variances over all of ``x`` (population variance, as ``computeMargins`` pools its examples),
    whatever ``batch_size`` the forward passes take. The model's ``.grad`` is left alone."""
    size = batch_size or len(x)
    module = early_module(model, x[:1].to(device))
    raw, total, squares = [], 0.0, 0.0
    grabbed: list[torch.Tensor] = []
    handle = module.register_forward_hook(lambda _m, _i, out: grabbed.append(out))
    try:
        for i in range(0, len(x), size):
            grabbed.clear()
            xb, yb = x[i : i + size].to(device), y[i : i + size].to(device)
            logits = model(xb)
            top2 = logits.topk(2, dim=1).indices
            right = top2[:, 0] == yb
            a = torch.where(right, top2[:, 0], yb)
            b = torch.where(right, top2[:, 1], top2[:, 0])
            diff = (logits.gather(1, a[:, None]) - logits.gather(1, b[:, None])).squeeze(1)
            (grad,) = torch.autograd.grad(diff.sum(), grabbed[0])
            norms = grad.flatten(1).double().norm(dim=1)
            raw.append((diff.detach().double() / (norms + 1e-7)).cpu())
            h = grabbed[0].detach().flatten(1).double()
            total, squares = total + h.sum(0), squares + h.pow(2).sum(0)
    finally:
        handle.remove()
    variances = (squares / len(x) - (total / len(x)) ** 2).clamp_min(0).cpu().numpy()
    spread = float(stats.trim_mean(variances, 0.05)) ** 0.5
    return torch.cat(raw) / (spread + 1e-7)


@measure("mixup_margin", group=GROUP, needs=("weights", "train_data", "gradients"), cost="D")
def mixup_margin(ctx: MeasureContext) -> float:
    """−mean normalized margin at the early layer on label-wise mixed-up training inputs (each
    averaged with a random same-class partner), over 500 examples (Natekar & Sharma 2020's
    "mixup margin"; margins as in :func:`normalized_margins`). Not for token inputs."""
    x, y = _real_inputs(ctx, "mixup_margin")
    gen = _generator(ctx, 3)
    idx = torch.randperm(len(y), generator=gen)[:MARGIN_SAMPLES]
    mixed = labelwise_mixed(x[idx], y[idx], gen)
    return -float(normalized_margins(ctx.model, mixed, y[idx], ctx.device, ctx.batch_size).mean())


def _real_inputs(ctx: MeasureContext, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The training data, for a measure that mixes inputs: token ids have no midpoints."""
    x, y = ctx.require_data()
    if not x.is_floating_point():
        raise NotApplicable(f"{name} mixes inputs, and token inputs have no midpoints")
    return x, y


@measure("augmentation_penalty", group=GROUP, needs=DATA, cost="C")
def augmentation_penalty(ctx: MeasureContext) -> float:
    """Mean over examples of Σ_aug penalty (Aithal et al. 2021): |max_c p(x)_c − p(x′)_ĉ| when
    the predicted class ĉ survives augmentation x → x′, else the augmentation's λ (flip 6,
    saturation 1, crop 0.9 + resize 2, Sobel edges 3, brightness ±0.5 1, flip + saturation 12,
    cutout 2); on 2,048 seeded training images. (The submission returned −Σ; gengap keeps the
    sign that grows with inconsistency.)"""
    x, _ = ctx.require_data()
    if x.dim() != 4:
        raise NotApplicable("augmentation_penalty needs image inputs (N, C, H, W)")
    gen = _generator(ctx, 4)
    idx = torch.randperm(len(x), generator=gen)[:AUGMENT_SAMPLES]
    total = torch.zeros(len(idx), dtype=torch.float64)
    with torch.no_grad():
        for lo in range(0, len(idx), ctx.batch_size):
            rows = idx[lo : lo + ctx.batch_size]
            xb = x[rows].to(ctx.device)
            # the clean outputs come from the shared pass over the training set
            p = torch.softmax(ctx.logits[rows.to(ctx.logits.device)].double(), dim=1)
            conf, pred = p.max(dim=1)
            for augment, lam in AUGMENTATIONS:
                q = torch.softmax(ctx.forward_model(augment(xb, gen)).double(), dim=1)
                same = q.argmax(dim=1) == pred
                pen = torch.where(same, (conf - q.gather(1, pred[:, None]).squeeze(1)).abs(),
                                  torch.full_like(conf, float(lam)))
                total[lo : lo + len(xb)] += pen.cpu()
    return float(total.mean())


def label_variation_score(features: torch.Tensor, labels: torch.Tensor) -> float:
    """tr(Yᵀ L Y)/(4n) on the binary 1-NN graph of the L2-normalized features, directed (A_ij = 1
    when j is i's nearest neighbour; the final VPM entry's code leaves the graph unsymmetrized),
    with L = I − D^{-1/2} A D^{-1/2} (D the out-degrees) and Y the (soft) label matrix
    (Lassance et al. 2020)."""
    f = torch.nn.functional.normalize(features.double(), dim=1)
    d2 = torch.cdist(f, f).pow(2)
    d2.fill_diagonal_(float("inf"))
    nearest = d2.argmin(dim=1)
    adj = torch.zeros_like(d2)
    adj[torch.arange(len(f)), nearest] = 1.0
    inv_sqrt = adj.sum(1).rsqrt()
    lap = torch.eye(len(f), dtype=f.dtype) - inv_sqrt[:, None] * adj * inv_sqrt[None, :]
    y = labels.double()
    return float(torch.trace(y.T @ lap @ y) / (4 * len(f)))


@measure("label_variation", group=GROUP, needs=DATA, cost="C")
def label_variation(ctx: MeasureContext) -> float:
    """Label variation on a latent geometry graph (Lassance et al. 2020, the 3rd-place VPM):
    500 // classes training examples per class, input mixup with λ ~ Beta(2, 2) between shuffled
    pairs (inputs and one-hot labels), penultimate features, a 1-NN graph, and
    tr(Yᵀ L Y)/(4n) with the normalized Laplacian L. Not for token inputs."""
    x, y = _real_inputs(ctx, "label_variation")
    gen = _generator(ctx, 5)
    classes = torch.unique(y)
    per = max(1, GRAPH_SAMPLES // len(classes))
    idx = torch.cat([
        (y == c).nonzero().squeeze(1)[torch.randperm(int((y == c).sum()), generator=gen)[:per]]
        for c in classes
    ])
    onehot = torch.nn.functional.one_hot(
        torch.searchsorted(classes, y[idx]), len(classes)
    ).double()
    lam = torch.tensor(
        np.random.default_rng(ctx.options.seed).beta(2.0, 2.0, len(idx)), dtype=torch.float64
    )
    partner = torch.randperm(len(idx), generator=gen)
    xs = x[idx].double()
    shape = (-1,) + (1,) * (xs.dim() - 1)
    mixed = (lam.reshape(shape) * xs + (1 - lam.reshape(shape)) * xs[partner]).to(x.dtype)
    labels = lam[:, None] * onehot + (1 - lam[:, None]) * onehot[partner]
    model = ctx.forward_model
    head = last_layer(model, mixed[:1].to(ctx.device))
    feats, _ = capture(model, head, mixed, ctx.device, ctx.batch_size, "input",
                       lambda t: (t.flatten(2).mean(-1) if t.dim() > 2 else t).double())
    return label_variation_score(feats.cpu(), labels)
