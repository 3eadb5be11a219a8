"""PAC-Bayes measures built on σ′ (Jiang et al. 2020, appendix C.4; Dziugaite et al. 2020).

σ′ is the largest σ for which Gaussian noise u ~ N(0, σ²I) on the parameters lowers the
expected training accuracy by 0.1 (:mod:`gengap.measures.search` says exactly how it is found
and estimated). **σ is the standard deviation of the noise that is applied.** (The reference
implementation passes σ² as the standard deviation to ``torch.normal``, so its noise has std σ²
while its bounds use σ; gengap applies std σ.) The magnitude-aware σ′ perturbs parameter i
with std sqrt(σ²·w_i² + ε²), ε = 1e-3.

The parameters are those of the BatchNorm-folded network: every Linear/Conv weight and bias
(the reference also perturbs them, plus the identity BatchNorm left after folding). w, w⁰ and
ω = dim w in the bounds are the same vector, so the bound is about the perturbation applied.
"""

from __future__ import annotations

import math

import torch

from gengap.measures.context import MeasureContext
from gengap.measures.registry import NotApplicable, measure
from gengap.measures.search import (
    Probe,
    SearchResult,
    estimate_drop,
    inverse_square,
    search_scale,
    unreachable,
)
from gengap.measures.streams import measure_generator

DATA = ("weights", "train_data")
INIT_DATA = ("weights", "init_weights", "train_data")


def example_pool(ctx: MeasureContext) -> torch.Tensor:
    """Indices of the training examples the searches draw from (``options.subset``)."""
    m = ctx.num_examples
    if ctx.options.subset is None or ctx.options.subset >= m:
        return torch.arange(m)
    gen = measure_generator(ctx.options.seed, "example-pool")  # not the run's data order
    return torch.randperm(m, generator=gen)[: ctx.options.subset]


def sigma_search(ctx: MeasureContext, magnitude: bool) -> SearchResult:
    """Find σ′ (or the magnitude-aware σ′) on ``ctx``; Monte Carlo draws batched."""
    opts = ctx.options
    x, y = ctx.require_data()
    clean = ctx.train_correct
    pool = example_pool(ctx)
    if (hopeless := unreachable(clean, ctx.logits.shape[1], opts)) is not None:
        return hopeless
    ctx.monte_carlo_passes()  # they run from here on (not at chance accuracy, above)
    net = ctx.flat_net
    w = net.vector
    cpu_gen = torch.Generator().manual_seed(opts.seed * 2 + magnitude)
    dev_gen = torch.Generator(device=net.device).manual_seed(opts.seed * 2 + magnitude + 7919)

    def rounds(sigma: float):
        std: float | torch.Tensor = (
            torch.sqrt(sigma**2 * w**2 + opts.mag_eps**2) if magnitude else sigma
        )

        def one_round(chunk: int) -> torch.Tensor:
            drops = []
            per_call = max(1, ctx.batch_size // chunk)  # draws per batched forward
            for start in range(0, opts.mc_draws, per_call):
                k = min(per_call, opts.mc_draws - start)
                idx = pool[torch.randint(len(pool), (k, chunk), generator=cpu_gen)]
                noise = torch.randn((k, len(w)), generator=dev_gen, device=net.device)
                logits = net.forward_many(w + std * noise, x[idx.to(x.device)].to(net.device))
                dev_idx = idx.to(net.device)
                noisy = logits.argmax(-1) == y.to(net.device)[dev_idx]
                drops.append((clean[dev_idx].float() - noisy.float()).mean(dim=1))
            return torch.cat(drops)

        return one_round

    def probe(sigma: float) -> Probe:
        return estimate_drop(rounds(sigma), opts, sigma)

    def screen(sigma: float) -> Probe:  # one small round: both its verdicts are trusted
        return estimate_drop(rounds(sigma), opts, sigma, screen_only=True)

    # the magnitude-aware noise is ε even at σ = 0: its search may end there
    return search_scale(probe, opts, screen, floor=magnitude)


def _sigma(ctx: MeasureContext, name: str) -> float:
    search = ctx.sigma_search if name == "pacbayes_sigma" else ctx.mag_sigma_search
    if search.no_value:  # the value NaN, with the reason
        raise NotApplicable(search.no_value)
    return search.value


def _bound(norm_sq: float, sigma: float, m: int) -> float:
    return norm_sq / (4 * sigma**2) + math.log(m / sigma) + 10


def _mag_bound(ctx: MeasureContext, vector: torch.Tensor, sigma: float) -> float:
    """¼ Σ_i log[(ε² + (σ²+1)‖v‖²/ω) / (ε² + σ²(w_i − w_i⁰)²)] + log(m/σ) + 10
    (Dziugaite et al.'s code for eqs. 56–57; the denominator uses w − w⁰ in both variants,
    as written in the paper)."""
    if sigma == 0:  # ε alone drops the accuracy by the target: log(m/σ′) is infinite
        return math.inf
    eps2 = ctx.options.mag_eps**2
    w, w0 = ctx.flat_net.vector.double(), ctx.init_vector
    omega = len(w)
    numerator = eps2 + (sigma**2 + 1) * float((vector**2).sum()) / omega
    denominator = eps2 + sigma**2 * (w - w0) ** 2
    return float(0.25 * torch.log(numerator / denominator).sum()) + math.log(
        ctx.num_examples / sigma) + 10


@measure("pacbayes_sigma", group="pacbayes", needs=DATA, cost="F")
def pacbayes_sigma(ctx: MeasureContext) -> float:
    """σ′: std of the Gaussian parameter noise that lowers training accuracy by 0.1
    (Jiang et al. 2020, C.4; a bracketed search with sequentially stopped Monte Carlo, see
    :mod:`gengap.measures.search`)."""
    return _sigma(ctx, "pacbayes_sigma")


@measure("pacbayes_mag_sigma", group="pacbayes", needs=DATA, cost="F")
def pacbayes_mag_sigma(ctx: MeasureContext) -> float:
    """Magnitude-aware σ′: noise std sqrt(σ′²w_i² + ε²) per parameter lowers training accuracy
    by 0.1 (Jiang et al. 2020, C.4)."""
    return _sigma(ctx, "pacbayes_mag_sigma")


@measure("pacbayes_init", group="pacbayes", needs=INIT_DATA, cost="F")
def pacbayes_init(ctx: MeasureContext) -> float:
    """‖w − w⁰‖²/(4σ′²) + log(m/σ′) + 10 (Jiang et al. 2020, eq. 48)."""
    distance = float(((ctx.flat_net.vector.double() - ctx.init_vector) ** 2).sum())
    return _bound(distance, _sigma(ctx, "pacbayes_sigma"), ctx.num_examples)


@measure("pacbayes_orig", group="pacbayes", needs=DATA, cost="F")
def pacbayes_orig(ctx: MeasureContext) -> float:
    """‖w‖²/(4σ′²) + log(m/σ′) + 10 (Jiang et al. 2020, eq. 49)."""
    norm = float((ctx.flat_net.vector.double() ** 2).sum())
    return _bound(norm, _sigma(ctx, "pacbayes_sigma"), ctx.num_examples)


@measure("pacbayes_flatness", group="pacbayes", needs=DATA, cost="F")
def pacbayes_flatness(ctx: MeasureContext) -> float:
    """1/σ′² (Jiang et al. 2020, eq. 53)."""
    return inverse_square(_sigma(ctx, "pacbayes_sigma"))


@measure("pacbayes_mag_init", group="pacbayes", needs=INIT_DATA, cost="F")
def pacbayes_mag_init(ctx: MeasureContext) -> float:
    """¼ Σ_i log[(ε² + (σ′²+1)‖w − w⁰‖²/ω) / (ε² + σ′²(w_i − w_i⁰)²)] + log(m/σ′) + 10 with
    the magnitude-aware σ′ (Jiang et al. 2020, eq. 56)."""
    delta = ctx.flat_net.vector.double() - ctx.init_vector
    return _mag_bound(ctx, delta, _sigma(ctx, "pacbayes_mag_sigma"))


@measure("pacbayes_mag_orig", group="pacbayes", needs=INIT_DATA, cost="F")
def pacbayes_mag_orig(ctx: MeasureContext) -> float:
    """¼ Σ_i log[(ε² + (σ′²+1)‖w‖²/ω) / (ε² + σ′²(w_i − w_i⁰)²)] + log(m/σ′) + 10 with the
    magnitude-aware σ′ (Jiang et al. 2020, eq. 57)."""
    return _mag_bound(ctx, ctx.flat_net.vector.double(), _sigma(ctx, "pacbayes_mag_sigma"))


@measure("pacbayes_mag_flatness", group="pacbayes", needs=DATA, cost="F")
def pacbayes_mag_flatness(ctx: MeasureContext) -> float:
    """1/σ′² with the magnitude-aware σ′ (Jiang et al. 2020, eq. 61)."""
    return inverse_square(_sigma(ctx, "pacbayes_mag_sigma"))
