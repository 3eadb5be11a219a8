"""Population training against a plain one-model-at-a-time PyTorch loop.

For each case, P networks that differ in learning rate and weight decay (one seed, so one data
order) train for the same S steps on the same minibatches, once as P plain PyTorch loops
(model, torch.optim.SGD, forward, cross-entropy, backward, step) and once as one gengap
population (the compiled kernel of gengap.train.fused_cnn for the Small CNN Zoo network, its
wide forward for other sequential families, or vmap where a family has none; batched SGD; its
per-step divergence check). The path a case took is printed; GENGAP_NATIVE=0 turns the kernel
off, to time the wide forward instead. Printed: networks trained per second both ways and their
ratio, and the achieved FLOP/s of both as a fraction of this machine's float32 matmul peak,
measured in the same run with the same threads (one by default, as each zoo worker and the
studies train: with two threads on a busy 2-core machine the plain loop's many tiny steps slow
down most, which would flatter the population). Each timing is the best of --repeats
measurements, taken in turns (other processes on the machine only add time). Both loops run
with glibc keeping freed blocks for reuse (:func:`gengap.memory_reuse.reuse_large_blocks`,
which a population turns on).

    .venv/bin/python benchmarks/bench_population.py [--population 16] [--steps 20]
        [--batches 512,128,32] [--repeats 3] [--threads 1] [--cases abc]
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from gengap.memory_reuse import reuse_large_blocks
from gengap.models import build
from gengap.specs import ArchSpec, RunSpec, TrainSpec
from gengap.train.population import Population

# Each case with the batch size its source trains at, measured besides --batches: the Small CNN
# Zoo's flag default (512), MNIST-1D's (100) and the Fantastic study's NiN default (32).
CASES = {
    "(a) Small CNN Zoo net, 28x28x1": (ArchSpec(family="cnn"), (1, 28, 28), 512),
    "(b) MLP 2x100, MNIST-1D (40)": (ArchSpec(family="mlp", width=100, depth=2), (40,), 100),
    "(c) NiN 2 blocks x 32, 32x32x3": (ArchSpec(family="nin", width=32, depth=2), (3, 32, 32), 32),
}


def matmul_peak(size: int = 2048, repeats: int = 10) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - started)


def batches(shape: tuple[int, ...], batch: int, steps: int) -> list[tuple[torch.Tensor, ...]]:
    gen = torch.Generator().manual_seed(0)
    return [(torch.randn(batch, *shape, generator=gen),
             torch.randint(0, 10, (batch,), generator=gen)) for _ in range(steps + 1)]


def plain_loop(runs: list[RunSpec], shape: tuple[int, ...], data: list) -> float:
    """Seconds to train every run alone for len(data) - 1 steps (first step: warm-up)."""
    total = 0.0
    for run in runs:
        torch.manual_seed(run.seed)
        model = build(run.arch, shape, 10)
        opt = torch.optim.SGD(model.parameters(), lr=run.train.lr, momentum=0.9,
                              weight_decay=run.train.weight_decay)
        for i, (x, y) in enumerate(data):
            if i == 1:
                started = time.perf_counter()
            loss = nn.functional.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        total += time.perf_counter() - started
    return total


def population(runs: list[RunSpec], shape: tuple[int, ...], data: list) -> tuple[float, str]:
    """Seconds to train the runs as one population for len(data) - 1 steps, and its path."""
    from types import SimpleNamespace

    splits = SimpleNamespace(input_shape=shape, num_classes=10)
    pop = Population(runs, splits, torch.device("cpu"))  # type: ignore[arg-type]
    lr = torch.tensor([r.train.lr for r in runs])
    for i, (x, y) in enumerate(data):
        if i == 1:
            started = time.perf_counter()
        losses, gradient = pop.losses_and_gradient(x, y)
        losses.tolist()  # the divergence check of fit_population
        pop.step(gradient, lr, None)
    path = "kernel" if pop.fused is not None else "wide" if pop.wide is not None else "vmap"
    return time.perf_counter() - started, path


def step_flops(arch: ArchSpec, shape: tuple[int, ...], batch: int) -> int:
    """FLOPs of one training step (forward and backward) of one network."""
    model = build(arch, shape, 10)
    x, y = torch.randn(batch, *shape), torch.randint(0, 10, (batch,))
    with FlopCounterMode(display=False) as counter:
        nn.functional.cross_entropy(model(x), y).backward()
    return counter.get_total_flops()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--population", type=int, default=16, help="networks per population")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batches", default="512,128,32",
                        help="batch sizes to measure, besides each case's own (marked *)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads, as a zoo worker has (0: torch's default)")
    parser.add_argument("--cases", default="abc", help="which of the cases (a), (b), (c)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    reuse_large_blocks()  # for both loops alike
    peak = max(matmul_peak() for _ in range(args.repeats))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; float32 matmul peak "
          f"{peak / 1e9:.1f} GFLOP/s; P = {args.population} networks, {args.steps} steps each")
    print(f"{'case':34} {'batch':>5} {'plain nets/s':>12} {'pop nets/s':>11} {'speed-up':>9} "
          f"{'pop GFLOP/s':>11} {'of peak':>8} {'plain of peak':>13} {'path':>6}")
    for name, (arch, shape, published) in CASES.items():
        if name[1] not in args.cases:
            continue
        for batch in sorted({int(b) for b in args.batches.split(",")} | {published}, reverse=True):
            runs = [RunSpec(arch=arch, seed=0, train=TrainSpec(
                lr=0.01 * (1 + i % 4), weight_decay=1e-4 * (i // 4), batch_size=batch))
                for i in range(args.population)]
            data = batches(shape, batch, args.steps)
            plain = together = float("inf")
            for _ in range(args.repeats):  # in turns, so that the machine's load hits both
                plain = min(plain, plain_loop(runs, shape, data))
                seconds, path = population(runs, shape, data)
                together = min(together, seconds)
            flops = step_flops(arch, shape, batch) * args.steps * len(runs)
            mark = "*" if batch == published else " "
            print(f"{name:34} {batch:4d}{mark} {len(runs) / plain:12.2f} "
                  f"{len(runs) / together:11.2f} {plain / together:8.2f}x "
                  f"{flops / together / 1e9:11.2f} "
                  f"{flops / together / peak:8.1%} {flops / plain / peak:13.1%} {path:>6}")
    print("* the batch size the case's source trains at")


if __name__ == "__main__":
    main()
