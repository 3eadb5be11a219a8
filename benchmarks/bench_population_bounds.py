"""How fast could a population step of Small CNN Zoo networks at its source's batch (512) be,
if built from torch's CPU kernels? Lower bounds set against the plain loop's step, all
measured in the same run with one thread:

- products: the step's matrix products alone, each convolution's forward, input gradient and
  weight gradient as one product batched over the members (the first convolution's, on the
  shared input, as one plain product with its bias as a column of ones), each the fastest of
  its operand layouts and of its transpose, timed on a part of --part examples with its
  operands in cache, times the parts in a batch (the dense layer's products are left out);
- passes: the memory passes such products need around them: the patches of every convolution
  after the first, gathered tap by tap from the activation (members first, channels last,
  padded), their gradients summed back tap by tap, and every convolution's ReLU forward and
  backward. Timed as torch's kernels run them on a part, and bounded below by the bytes they
  must read and write over the rate of a plain copy of the part's first activation in cache;
- the population's real step (oneDNN's grouped convolutions, the default micro-batches).

Printed: each as ms per step of all P networks, and the plain loop's step over it: the most a
population built that way could gain. The 3x target needs a step at most a third of the plain
loop's. Products plus passes at copy speed bound every population built from separate
kernels; only fused kernels (a convolution that gathers its own patches and applies its bias
and ReLU in the same pass, as oneDNN's do in part) can go under it.

    .venv/bin/python benchmarks/bench_population_bounds.py [--population 16] [--batch 512]
        [--part 8] [--repeats 5]
"""

from __future__ import annotations

import argparse
import itertools
import time
from collections.abc import Callable
from types import SimpleNamespace

import torch
from bench_micro_batches import seconds_per_call
from torch import nn

from gengap.memory_reuse import reuse_large_blocks
from gengap.models import build
from gengap.specs import ArchSpec, RunSpec, TrainSpec
from gengap.train.population import Population

SHAPE = (1, 28, 28)


def best(fn: Callable[[], object], repeats: int) -> float:
    """The fastest of ``repeats`` calls, after a warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def product_seconds(batch: int, m: int, k: int, n: int, repeats: int) -> float:
    """The fastest batched (m x k) @ (k x n) over the operands' four layouts, and the same for
    its transpose (n x k) @ (k x m)."""
    times = []
    for (rows, cols), a_t, b_t in itertools.product(((m, n), (n, m)), (False, True),
                                                     (False, True)):
        a = torch.randn(batch, k, rows).transpose(1, 2) if a_t else torch.randn(batch, rows, k)
        b = torch.randn(batch, cols, k).transpose(1, 2) if b_t else torch.randn(batch, k, cols)
        out = torch.empty(batch, rows, cols)
        times.append(best(lambda a=a, b=b, out=out: torch.bmm(a, b, out=out), repeats))
    return min(times)


def conv_geometry(model: nn.Module) -> list[tuple[nn.Conv2d, int, int]]:
    """Each convolution with its input's and its output's side, from a probe pass."""
    found: list[tuple[nn.Conv2d, int, int]] = []
    hooks = [m.register_forward_hook(
        lambda mod, args, out: found.append((mod, args[0].shape[-1], out.shape[-1])))
        for m in model.modules() if isinstance(m, nn.Conv2d)]
    model(torch.zeros(1, *SHAPE))
    for hook in hooks:
        hook.remove()
    return found


def products(convs: list[tuple[nn.Conv2d, int, int]], p: int, part: int,
             repeats: int) -> float:
    """Seconds of one part's matrix products (see the module's docstring)."""
    total = 0.0
    for index, (conv, _, side) in enumerate(convs):
        taps = conv.in_channels * conv.kernel_size[0] * conv.kernel_size[1]
        columns = part * side * side
        if index == 0:  # shared input: one product for all members, bias as a column of ones
            total += product_seconds(1, p * conv.out_channels, taps + 1, columns, repeats)
            total += product_seconds(1, p * conv.out_channels, columns, taps + 1, repeats)
            continue
        total += product_seconds(p, conv.out_channels, taps, columns, repeats)  # forward
        total += product_seconds(p, taps, conv.out_channels, columns, repeats)  # input grad
        total += product_seconds(p, conv.out_channels, columns, taps, repeats)  # weight grad
    return total


def tap_views(tensor: torch.Tensor, conv: nn.Conv2d, side: int) -> list[torch.Tensor]:
    """For each kernel tap, the (P, N, side, side, C) view of a padded activation that the tap
    reads at every output position."""
    (kh, kw), (sh, sw) = conv.kernel_size, conv.stride
    return [tensor[:, :, i:i + sh * side:sh, j:j + sw * side:sw]
            for i in range(kh) for j in range(kw)]


def patch_passes(conv: nn.Conv2d, side_in: int, side: int, p: int, part: int,
                 repeats: int) -> tuple[float, int]:
    """Seconds to gather one part's patches for ``conv`` and to sum their gradients back, tap
    by tap, and the bytes that must move: the activation read and the patches written, then
    the reverse."""
    kh, kw = conv.kernel_size
    ph, pw = conv.padding
    padded = torch.randn(p, part, side_in + 2 * ph, side_in + 2 * pw, conv.in_channels)
    patches = torch.empty(p, part, side, side, kh * kw, conv.in_channels)
    patch_grads = torch.randn_like(patches)
    views = tap_views(padded, conv, side)

    def gather() -> None:
        for tap, view in enumerate(views):
            patches[:, :, :, :, tap].copy_(view)

    def scatter() -> None:
        padded.zero_()
        for tap, view in enumerate(views):
            view.add_(patch_grads[:, :, :, :, tap])

    activation_bytes = p * part * side_in * side_in * conv.in_channels * 4
    return (best(gather, repeats) + best(scatter, repeats),
            2 * (activation_bytes + patches.nbytes))


def passes(convs: list[tuple[nn.Conv2d, int, int]], p: int, part: int,
           repeats: int) -> tuple[float, int]:
    """Seconds of one part's memory passes (see the module's docstring), as torch's kernels run
    them, and the bytes they must read and write at least: a ReLU reads its input and writes
    its output, its backward reads the gradient and the output and writes one; the patches'
    passes as :func:`patch_passes` says."""
    seconds, moved = 0.0, 0
    for index, (conv, side_in, side) in enumerate(convs):
        out = torch.randn(p, part, side, side, conv.out_channels)
        relu, grad = torch.empty_like(out), torch.randn_like(out)
        seconds += best(lambda out=out, relu=relu: torch.clamp(out, min=0, out=relu), repeats)
        seconds += best(lambda grad=grad, relu=relu:
                        torch.ops.aten.threshold_backward(grad, relu, 0), repeats)
        moved += 5 * out.nbytes
        if index > 0:  # the first convolution's patches are of the shared input: negligible
            patch_seconds, patch_bytes = patch_passes(conv, side_in, side, p, part, repeats)
            seconds += patch_seconds
            moved += patch_bytes
    return seconds, moved


def copy_rate(convs: list[tuple[nn.Conv2d, int, int]], p: int, part: int,
              repeats: int) -> float:
    """Bytes read and written per second by a plain copy of one part's first activation (in
    cache after the warm-up)."""
    conv, _, side = convs[0]
    source = torch.randn(p * part * side * side * conv.out_channels)
    target = torch.empty_like(source)
    return 2 * source.nbytes / best(lambda: target.copy_(source), repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--population", type=int, default=16)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--part", type=int, default=8,
                        help="examples per part for the bounds (in cache)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    reuse_large_blocks()
    arch = ArchSpec(family="cnn")
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, *SHAPE, generator=gen)
    y = torch.randint(0, 10, (args.batch,), generator=gen)
    model = build(arch, SHAPE, 10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def plain_step() -> None:
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    runs = [RunSpec(arch=arch, seed=0, train=TrainSpec(lr=0.01 * (1 + i % 4),
                                                       batch_size=args.batch))
            for i in range(args.population)]
    splits = SimpleNamespace(input_shape=SHAPE, num_classes=10)
    population = Population(runs, splits, "cpu")  # type: ignore[arg-type]
    lr = torch.full((args.population,), 1e-3)

    def population_step() -> None:
        _, gradient = population.losses_and_gradient(x, y)
        population.step(gradient, lr, None)

    plain, together = [], []
    for _ in range(args.repeats):  # in turns, so that the machine's load hits both alike
        plain.append(seconds_per_call(plain_step, 4) * args.population)
        together.append(seconds_per_call(population_step, 2))
    convs = conv_geometry(model)
    parts = args.batch / args.part
    rows = {
        "plain loop, every network alone": min(plain),
        "population (oneDNN, micro-batches)": min(together),
        "bound: products only": products(convs, args.population, args.part,
                                         args.repeats) * parts,
    }
    run_seconds, moved = passes(convs, args.population, args.part, args.repeats)
    rows["passes, as torch's kernels run them"] = run_seconds * parts
    rows["bound: passes at plain-copy speed"] = (
        moved / copy_rate(convs, args.population, args.part, args.repeats) * parts)
    rows["bound: products + passes"] = (rows["bound: products only"]
                                        + rows["bound: passes at plain-copy speed"])
    print(f"torch {torch.__version__}, 1 thread; P = {args.population} Small CNN Zoo networks, "
          f"28x28x1, batch {args.batch}; bounds from parts of {args.part} in cache")
    print(f"{'':38} {'ms per step':>11} {'plain loop over it':>18}")
    for name, seconds in rows.items():
        print(f"{name:38} {seconds * 1e3:11.1f} {min(plain) / seconds:17.2f}x")
    print(f"the 3x target: a step of at most {min(plain) / 3 * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
