"""A population's evaluation (the forward pass over a data set that each epoch's metrics take)
through the compiled Small CNN Zoo kernel against the wide forward, in turns in one run with
one thread: 16 Small CNN Zoo networks on 28x28x1 examples.

    .venv/bin/python benchmarks/bench_population_evaluation.py [--population 16]
        [--examples 4096] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time
from types import SimpleNamespace

import torch

from gengap.memory_reuse import reuse_large_blocks
from gengap.specs import ArchSpec, RunSpec, TrainSpec
from gengap.train.fused_cnn import unavailable_reason
from gengap.train.population import Population


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--population", type=int, default=16)
    parser.add_argument("--examples", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    reuse_large_blocks()
    runs = [RunSpec(arch=ArchSpec(family="cnn"), train=TrainSpec(lr=0.01 * (i + 1)))
            for i in range(args.population)]
    splits = SimpleNamespace(input_shape=(1, 28, 28), num_classes=10)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(args.examples, 1, 28, 28, generator=gen)
    y = torch.randint(0, 10, (args.examples,), generator=gen)
    kernel = Population(runs, splits, "cpu")  # type: ignore[arg-type]
    wide = Population(runs, splits, "cpu", fused=False)  # type: ignore[arg-type]
    if kernel.fused is None:
        raise SystemExit(f"the kernel is not used here: {unavailable_reason()}")
    best = {"kernel": float("inf"), "wide forward": float("inf")}
    results = {}
    for _ in range(args.repeats):  # in turns, so that the machine's load hits both alike
        for name, population in (("kernel", kernel), ("wide forward", wide)):
            started = time.perf_counter()
            results[name] = population.evaluate(x, y)
            best[name] = min(best[name], time.perf_counter() - started)
    gap = max(abs(a[0] - b[0]) for a, b in zip(results["kernel"], results["wide forward"],
                                                strict=True))
    print(f"torch {torch.__version__}, 1 thread; {args.population} Small CNN Zoo networks, "
          f"{args.examples} examples of 28x28x1")
    for name, seconds in best.items():
        print(f"{name:13} {seconds:7.3f} s")
    print(f"kernel over wide forward: {best['wide forward'] / best['kernel']:.2f}x faster; "
          f"largest difference in mean cross-entropy {gap:.1e}")


if __name__ == "__main__":
    main()
