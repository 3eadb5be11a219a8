"""Spectral measures of a whole Small-CNN-Zoo population at once (issue 10: ≤ 0.8 ms per
network over 1,000 networks), against WeightWatcher one network at a time, in one run.

The networks have the Small CNN Zoo's shapes (three 3x3 convolutions 1→16→16→16, a dense
16→10; 4,970 parameters); weights are drawn at random (seeded, Student-t with 3 degrees of
freedom, scaled by 1/√fan-in): no data set is downloaded. gengap computes every network's
model-level alpha, alpha_weighted, log_alpha_norm, log_norm, log_spectral_norm, stable_rank and
mp_softrank with :func:`gengap.measures.spectral.population_summary` (one batched SVD per slice
shape across all networks); WeightWatcher runs ``analyze(mp_fit=True)`` + ``get_summary`` on a
sample of the networks, and its time is scaled per network. Printed: ms per network both ways
(gengap also without the MP fit and with randomized ESDs), their ratio, and the largest α
differences over the sampled networks.

    .venv/bin/python benchmarks/bench_spectral_zoo.py [--networks 1000] [--ww-sample 20]
"""

from __future__ import annotations

import argparse
import logging
import time

import torch
from torch import nn

from gengap.measures.spectral import population_summary, spectral_table

SHAPES = [(16, 1, 3, 3), (16, 16, 3, 3), (16, 16, 3, 3), (10, 16)]


def population(count: int, seed: int = 0) -> list[torch.Tensor]:
    torch.manual_seed(seed)
    t = torch.distributions.StudentT(3.0)
    return [t.sample((count, *shape)) / torch.tensor(shape[1:]).prod().sqrt() for shape in SHAPES]


def network(weights: list[torch.Tensor], k: int) -> nn.Module:
    net = nn.Sequential(
        nn.Conv2d(1, 16, 3, 2, 1), nn.ReLU(), nn.Conv2d(16, 16, 3, 2, 1), nn.ReLU(),
        nn.Conv2d(16, 16, 3, 2, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(16, 10),
    )
    layers = [m for m in net if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        for layer, w in zip(layers, weights, strict=True):
            layer.weight.copy_(w[k])
    return net


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", type=int, default=1000)
    parser.add_argument("--ww-sample", type=int, default=20)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.disable(logging.WARNING)
    import weightwatcher as ww

    weights = population(args.networks)
    population_summary([w[:4] for w in weights])  # warm-up
    started = time.perf_counter()
    ours = population_summary(weights, randomize=False, mp_fit=True)
    ours_ms = (time.perf_counter() - started) * 1000 / args.networks
    started = time.perf_counter()
    population_summary(weights, randomize=True, mp_fit=True)
    rand_ms = (time.perf_counter() - started) * 1000 / args.networks
    started = time.perf_counter()
    population_summary(weights, randomize=False, mp_fit=False)
    plain_ms = (time.perf_counter() - started) * 1000 / args.networks

    theirs, details = [], []
    started = time.perf_counter()
    for k in range(args.ww_sample):
        watcher = ww.WeightWatcher(model=network(weights, k))
        details.append(watcher.analyze(mp_fit=True))
        theirs.append(watcher.get_summary(details[-1]))
    ww_ms = (time.perf_counter() - started) * 1000 / args.ww_sample
    gap = max(abs(ours["alpha"][k] - theirs[k]["alpha"]) for k in range(args.ww_sample))
    layer_gap = 0.0  # per layer, on the layers with >= 50 eigenvalues (the 144-value convs)
    for k in range(args.ww_sample):
        table = spectral_table(network(weights, k), randomize=False)
        mine = table[table["num_evals"] >= 50]["alpha"].to_numpy()
        other = details[k][details[k]["num_evals"] >= 50]["alpha"].astype(float).to_numpy()
        layer_gap = max(layer_gap, float(abs(mine - other).max()))
    big = max(abs(ours["log_norm"][k] - theirs[k]["log_norm"]) for k in range(args.ww_sample))
    soft = max(abs(ours["mp_softrank"][k] - theirs[k]["mp_softrank"])
               for k in range(args.ww_sample))

    print(f"{args.networks} Small-CNN-Zoo-shaped networks, {torch.get_num_threads()} threads")
    print(f"  gengap population_summary (PL + MP fits):          {ours_ms:7.3f} ms/network")
    print(f"  gengap population_summary (+ randomized ESDs):     {rand_ms:7.3f} ms/network")
    print(f"  gengap population_summary (PL fits, no MP fit):    {plain_ms:7.3f} ms/network")
    print(f"  WeightWatcher analyze(mp_fit) + get_summary, {args.ww_sample:3d} nets: "
          f"{ww_ms:7.1f} ms/network")
    print(f"  speed-up (PL + MP fits): {ww_ms / ours_ms:.0f}x;  target <= 0.8 ms/network: "
          f"{'met' if ours_ms <= 0.8 else 'NOT met'}")
    print(f"  max |alpha diff| per layer with >= 50 eigenvalues: {layer_gap:.1e}; of the model "
          f"mean: {gap:.3f} (WeightWatcher fits layers with < 20 eigenvalues by another rule)")
    print(f"  max |mean log_norm diff|: {big:.1e}; max |mean mp_softrank diff| (the MP fit): "
          f"{soft:.1e}")


if __name__ == "__main__":
    main()
