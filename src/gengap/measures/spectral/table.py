"""Per-layer heavy-tailed spectral tables and their model-level summaries (WeightWatcher's
``analyze`` and ``get_summary``), for one model or for a population of same-shaped models.

Columns follow WeightWatcher's names, so values can be cross-checked against it (but
``bulk_max`` and ``rand_bulk_max``, the MP bulk edge in the units of the ESD rescaled to mean
1, where WeightWatcher 0.7.7 gives it in the layer's own units):
``num_evals, lambda_max, sv_max, alpha, xmin, D, sigma, num_pl_spikes, norm, log_norm,
log_spectral_norm, alpha_weighted, log_alpha_norm, stable_rank`` and, with the MP fit,
``sigma_mp, bulk_max, mp_softrank, num_spikes``; with randomization, ``max_rand_eval,
rand_distance, ww_softrank, rand_sigma_mp, rand_bulk_max, rand_mp_softrank, num_traps``.
``reliable`` is False, and ``warning`` says why, for layers with fewer than 50 eigenvalues
(WeightWatcher's recommended minimum for a power-law fit): their α is reported, not trusted.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd
import torch
from torch import nn

from gengap.measures.spectral.esd import (
    batched_kernel_slices,
    eigenvalues_many,
    layer_slices,
    shuffled,
    state_slices,
)
from gengap.measures.spectral.marchenko_pastur import fit_mp
from gengap.measures.spectral.powerlaw import fit_power_law
from gengap.measures.streams import measure_generator

RELIABLE_EVALS = 50  # WeightWatcher's README: power-law fits need at least 50 eigenvalues
MIN_EVALS = 8  # WeightWatcher's analyze(min_evals) default: smaller layers are not summarized
OVER_TRAINED, UNDER_TRAINED = 2.0, 6.0
SUMMARY = (
    "log_norm", "alpha", "alpha_weighted", "log_alpha_norm", "log_spectral_norm",
    "stable_rank", "mp_softrank", "rand_distance",
)


def spectral_table(
    model: nn.Module | Mapping[str, torch.Tensor],
    randomize: bool = True,
    mp_fit: bool = True,
    conv_scale: bool = True,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> pd.DataFrame:
    """One row per Linear/Conv layer of ``model`` (a module, or a state dict whose weight
    tensors are taken as layers; BatchNorm is not folded here, pass a folded model for that):
    its ESD size, power-law fit, norm metrics and, optionally, its MP fit and randomized-ESD
    comparison. See the module docstring for the columns."""
    layers = (
        layer_slices(model, conv_scale) if isinstance(model, nn.Module)
        else state_slices(model, conv_scale)
    )
    if not layers:
        return pd.DataFrame()
    stacks = [layer.slices.to(device)[None] for layer in layers]
    rows = analyze_stacks(stacks, randomize, mp_fit, seed)
    table = pd.DataFrame(
        {k: [float(v[0]) for v in col] for k, col in _columns(rows).items()}
    )
    table.insert(0, "layer_id", range(len(layers)))
    table.insert(1, "name", [layer.name for layer in layers])
    table.insert(2, "kind", [layer.kind for layer in layers])
    table.insert(3, "N", [layer.n_rows for layer in layers])
    table.insert(4, "M", [layer.n_cols for layer in layers])
    table.insert(5, "num_slices", [int(layer.slices.shape[0]) for layer in layers])
    table["num_evals"] = table["num_evals"].astype(int)
    _flag(table)
    return table


def summarize(table: pd.DataFrame) -> dict[str, float]:
    """Model-level values: the mean over layers, as WeightWatcher's ``get_summary`` (layers
    with fewer than 8 eigenvalues are left out, as its ``analyze`` skips them)."""
    used = table[table["num_evals"] >= MIN_EVALS] if len(table) else table
    return {k: float(used[k].mean()) if k in used and len(used) else math.nan for k in SUMMARY}


def population_summary(
    layer_weights: list[torch.Tensor],
    randomize: bool = False,
    mp_fit: bool = True,
    conv_scale: bool = True,
    seed: int = 0,
) -> pd.DataFrame:
    """Model-level spectral summaries of B same-shaped networks at once: ``layer_weights``
    holds each layer's weights stacked over networks, (B, out, in) or (B, out, in, k...).
    Returns one row per network with the columns of :func:`summarize`. Singular values of all
    networks' slices of one shape go through a single batched SVD."""
    stacks = [batched_kernel_slices(w.double(), conv_scale) for w in layer_weights]
    rows = analyze_stacks(stacks, randomize, mp_fit, seed)
    cols = _columns(rows)
    counts = torch.tensor([float(c[0]) for c in cols["num_evals"]])
    used = counts >= MIN_EVALS
    out = {}
    for key in SUMMARY:
        if key not in cols:
            continue
        values = torch.stack([c.double().cpu() for c in cols[key]], dim=1)[:, used]
        out[key] = values.nanmean(dim=1).numpy()  # a failed fit is left out, as in summarize
    return pd.DataFrame(out)


def analyze_stacks(
    stacks: list[torch.Tensor], randomize: bool, mp_fit: bool, seed: int
) -> list[dict[str, torch.Tensor]]:
    """The metrics of each layer, given as slices (B, k, N, M) of B networks: one dict of
    (B,)-tensors per layer."""
    # WeightWatcher pools 5 shuffled replicas for layers with < 100 eigenvalues, else 1
    replicas = [5 if s.shape[1] * s.shape[3] < 100 else 1 for s in stacks]
    generator = measure_generator(seed, "esd-shuffle")  # not the stream the weights came from
    randoms = (
        [shuffled(s, generator) for s, r in zip(stacks, replicas, strict=True) for _ in range(r)]
        if randomize
        else []
    )
    evals_all = eigenvalues_many(stacks + randoms)
    evals = evals_all[: len(stacks)]
    rand_evals, firsts, at = [], [], len(stacks)
    for r in replicas if randomize else []:
        rand_evals.append(torch.cat(evals_all[at : at + r], dim=1).sort(dim=1).values)
        firsts.append(evals_all[at])
        at += r

    rows: list[dict[str, torch.Tensor]] = [dict() for _ in stacks]
    _power_laws(evals, rows)
    for i, (e, s) in enumerate(zip(evals, stacks, strict=True)):
        row = rows[i]
        row["num_evals"] = torch.full((e.shape[0],), float(e.shape[1]))
        row["lambda_max"] = e[:, -1]
        row["sv_max"] = e[:, -1].sqrt()
        row["norm"] = e.sum(dim=1)
        row["log_norm"] = row["norm"].log10()
        row["log_spectral_norm"] = row["lambda_max"].log10()
        row["alpha_weighted"] = row["alpha"] * row["log_spectral_norm"]
        row["log_alpha_norm"] = _log10_power_sum(e, row["alpha"])
        row["stable_rank"] = row["norm"] / row["lambda_max"]
        n_rows, n_cols = s.shape[2], s.shape[3]
        if mp_fit:
            fit = fit_mp(e, n_rows, n_cols)
            row.update(sigma_mp=fit.sigma_mp, bulk_max=fit.bulk_max,
                       mp_softrank=fit.mp_softrank, num_spikes=fit.num_spikes)
        if randomize:
            r = rand_evals[i]
            row["max_rand_eval"] = r[:, -1]
            row["rand_distance"] = jensen_shannon_distance(e, firsts[i])
            # one shuffled copy, as WeightWatcher's apply_random_esd draws for it: the largest
            # of 5 pooled ones is larger on average
            row["ww_softrank"] = firsts[i][:, -1] / e[:, -1]
            if mp_fit:
                fit = fit_mp(r, n_rows, n_cols)
                row.update(rand_sigma_mp=fit.sigma_mp, rand_bulk_max=fit.bulk_max,
                           rand_mp_softrank=fit.mp_softrank, num_traps=fit.num_spikes)
    return rows


def _power_laws(evals: list[torch.Tensor], rows: list[dict[str, torch.Tensor]]) -> None:
    """Fit all layers, one vectorized fit per ESD length."""
    by_len: dict[int, list[int]] = {}
    for i, e in enumerate(evals):
        by_len.setdefault(e.shape[1], []).append(i)
    for members in by_len.values():
        fit = fit_power_law(torch.cat([evals[i] for i in members]))
        sizes = [evals[i].shape[0] for i in members]
        for name in ("alpha", "xmin", "D", "sigma", "num_pl_spikes"):
            for i, part in zip(members, getattr(fit, name).split(sizes), strict=True):
                rows[i][name] = part


def _log10_power_sum(evals: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """log10 Σ λ^α, in log space (λ^α overflows for large α); zero eigenvalues add nothing."""
    logs = torch.where(evals > 0, evals.clamp(min=1e-300).log(), torch.full_like(evals, -math.inf))
    return torch.logsumexp(alpha[:, None] * logs, dim=1) / math.log(10)


def jensen_shannon_distance(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """WeightWatcher's ``rand_distance``: the Jensen–Shannon distance (natural log) between the
    sorted eigenvalue vectors p and q (B, n), each normalized to sum 1 (as scipy's
    ``stats.entropy`` does); NaN where either is all zero (an all-zero layer: no distribution
    to compare, NaN in WeightWatcher too)."""
    p_sum, q_sum = p.sum(dim=1, keepdim=True), q.sum(dim=1, keepdim=True)
    p, q = p / p_sum, q / q_sum
    m = (p + q) / 2

    def kl(a: torch.Tensor) -> torch.Tensor:
        return torch.where(a > 0, a * (a.clamp(min=1e-300) / m.clamp(min=1e-300)).log(), 0.0).sum(1)

    distance = ((kl(p) + kl(q)) / 2).clamp(min=0).sqrt()
    return distance.where(((p_sum > 0) & (q_sum > 0)).squeeze(1), math.nan)


def _columns(rows: list[dict[str, torch.Tensor]]) -> dict[str, list[torch.Tensor]]:
    keys = list(rows[0])
    return {k: [r[k].detach().cpu() for r in rows] for k in keys}


def _flag(table: pd.DataFrame) -> None:
    table["reliable"] = table["num_evals"] >= RELIABLE_EVALS
    warnings = []
    for n, alpha in zip(table["num_evals"], table["alpha"], strict=True):
        if n < RELIABLE_EVALS:
            warnings.append(f"unreliable: {n} < {RELIABLE_EVALS} evals")
        elif not np.isfinite(alpha):
            warnings.append("power-law fit failed")
        elif alpha < OVER_TRAINED:
            warnings.append("over-trained (alpha < 2)")
        elif alpha > UNDER_TRAINED:
            warnings.append("under-trained (alpha > 6)")
        else:
            warnings.append("")
    table["warning"] = warnings
