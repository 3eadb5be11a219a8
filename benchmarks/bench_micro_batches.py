"""Micro-batch size against step time for a population of Small CNN Zoo networks at a large
batch, through the wide forward (the compiled kernel, which these networks take by default,
has no micro-batches): one micro-batch's forward and backward timed at several sizes, the time
a step would take in parts of that size (their forwards and backwards, and the one optimizer
step), and its speed-up over the plain loop's step of every network alone
at the full batch, measured in turns in the same run with one thread. A part costs a fixed
amount (Python, autograd, oneDNN's per-call work: about the time of a part of one example) plus
a cost per example that grows once the part's activations leave the cache; the default
micro-batch size (Population.micro_batch) sits where their sum per example is least.
``--compile`` also times the parts of a second population whose forward pass
``torch.compile`` (inductor) compiled, its backward with it (a compile per part size, tens of
seconds each, before the timing).

    .venv/bin/python benchmarks/bench_micro_batches.py [--population 16] [--batch 512]
        [--sizes 1,8,16,32,64] [--repeats 5] [--compile]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from types import SimpleNamespace

import torch
from torch import nn

from gengap.memory_reuse import reuse_large_blocks
from gengap.models import build
from gengap.specs import ArchSpec, RunSpec, TrainSpec
from gengap.train.population import Population

SHAPE = (1, 28, 28)


def seconds_per_call(step, calls: int) -> float:
    """Seconds per call of ``step``, over ``calls`` calls after one warm-up call
    (allocations, oneDNN's kernel choice)."""
    step()
    started = time.perf_counter()
    for _ in range(calls):
        step()
    return (time.perf_counter() - started) / calls


def small_cnn_zoo_case(population: int, batch: int
                       ) -> tuple[list[RunSpec], torch.Tensor, torch.Tensor, Callable[[], None]]:
    """``population`` runs of the Small CNN Zoo network (learning rates apart), one random
    batch of 28x28x1 inputs and labels, and the plain loop's step of one such network on it
    (model, SGD with momentum, forward, cross-entropy, backward, step)."""
    arch = ArchSpec(family="cnn")
    runs = [RunSpec(arch=arch, seed=0, train=TrainSpec(lr=0.01 * (1 + i % 4),
                                                       batch_size=batch))
            for i in range(population)]
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, *SHAPE, generator=gen)
    y = torch.randint(0, 10, (batch,), generator=gen)
    model = build(arch, SHAPE, 10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def plain_step() -> None:
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return runs, x, y, plain_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--population", type=int, default=16)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--sizes", default="1,8,16,32,64", help="micro-batch sizes to time")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--compile", action="store_true",
                        help="also time parts with a torch.compile'd forward pass")
    args = parser.parse_args()
    torch.set_num_threads(1)
    reuse_large_blocks()
    runs, x, y, plain_step = small_cnn_zoo_case(args.population, args.batch)
    sizes = [int(s) for s in args.sizes.split(",")]
    # parts as large as the largest size: each timed part is taken whole
    splits = SimpleNamespace(input_shape=SHAPE, num_classes=10)
    population = Population(runs, splits, "cpu", micro_batch=max(sizes),  # type: ignore[arg-type]
                            fused=False)  # the wide forward's parts (the kernel has none)
    kinds = {"eager": population}
    if args.compile:
        kinds["compiled"] = Population(runs, splits, "cpu",  # type: ignore[arg-type]
                                       micro_batch=max(sizes), fused=False)
        kinds["compiled"].forward = torch.compile(  # type: ignore[method-assign]
            kinds["compiled"].forward, dynamic=False)
    lr = torch.full((args.population,), 1e-3)
    _, gradient = population.losses_and_gradient(x[:1], y[:1])
    plain: list[float] = []
    update: list[float] = []  # the optimizer step, once per batch whatever the parts
    parts = {(kind, size): [] for kind in kinds for size in sizes}
    for _ in range(args.repeats):  # in turns, so that the machine's load hits all alike
        plain.append(seconds_per_call(plain_step, 4))
        update.append(seconds_per_call(lambda: population.step(gradient, lr, None), 16))
        for (kind, size), times in parts.items():
            times.append(seconds_per_call(
                lambda pop=kinds[kind], size=size: pop.losses_and_gradient(x[:size], y[:size]),
                max(1, 64 // size)))
    plain_all = min(plain) * args.population  # every network alone, one step each
    fixed = min(parts["eager", min(sizes)])  # the smallest part: almost all fixed cost
    print(f"torch {torch.__version__}, 1 thread; P = {args.population} Small CNN Zoo networks, "
          f"28x28x1, batch {args.batch}")
    print(f"plain loop: {plain_all * 1e3:.1f} ms for one step of every network")
    print(f"{'forward':>8} {'micro-batch':>11} {'ms per part':>11} {'ms per example':>14} "
          f"{'step ms':>8} {'speed-up':>8}")
    for (kind, size), times in parts.items():
        part = min(times)
        step = part * args.batch / size + min(update)
        per_example = (part - fixed) / size  # the smallest part: none beyond the fixed cost
        shown = f"{per_example * 1e3:14.3f}" if size != min(sizes) else f"{'':>14}"
        print(f"{kind:>8} {size:11d} {part * 1e3:11.2f} {shown} {step * 1e3:8.1f} "
              f"{plain_all / step:7.2f}x")
    print(f"fixed cost per part about {fixed * 1e3:.2f} ms (the part of {min(sizes)}); "
          f"ms per example: the part's time less that, per example; the optimizer step "
          f"{min(update) * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
