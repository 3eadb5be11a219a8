"""How fast could a population step of Small CNN Zoo networks at its source's batch (512) be,
if built from matrix products over gathered patches and torch's CPU kernels around them? Set
against the plain loop's step, all measured in the same run with one thread, each time the
fastest single call of --repeats:

- products: the step's matrix products alone: each convolution's forward and weight gradient,
  and each later convolution's input gradient, as one product batched over the members (the
  first convolution, on the shared input, as one plain product with its bias as a column of
  ones), each the fastest of its operand layouts and of its transpose, timed on a part of
  --part examples with its operands in cache, times the parts in a batch (the dense layer's
  products are left out);
- passes: the memory passes such products need around them, each as one or a few of torch's
  kernels, in their fastest form found: every later convolution's patches gathered from the
  padded activation (members first, channels last) by one strided ``clamp`` that also applies
  the ReLU before it, their gradients summed back tap by tap, every ReLU's backward read off
  the activation before the ReLU, the last ReLU's forward (pooling reads it);
- the population's step through its wide forward (oneDNN's grouped convolutions, the default
  micro-batches), and through the compiled kernel of ``gengap.train.fused_cnn``, which is not
  built from such parts (when it can be built here).

Printed: each as ms per step of all P networks, and the plain loop's step over it: products
plus passes is the least such a population's step could take before the per-call costs of its
parts (Python, autograd), so the plain loop's step over it is the most it could gain. The 3x
target needs a step at most a third of the plain loop's. Fused kernels (a convolution that
gathers its own patches, as oneDNN's do, with its ReLU in the same pass, as gengap's kernel
does) are not bound by it.

    .venv/bin/python benchmarks/bench_population_bounds.py [--population 16] [--batch 512]
        [--part 8] [--repeats 5]
"""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Callable
from types import SimpleNamespace

import torch
from bench_micro_batches import SHAPE, seconds_per_call, small_cnn_zoo_case
from torch import nn

from gengap.memory_reuse import reuse_large_blocks
from gengap.models import build
from gengap.specs import ArchSpec
from gengap.train.population import Population


def best(fn: Callable[[], object], repeats: int) -> float:
    """The fastest of ``repeats`` calls, each after a warm-up call."""
    return min(seconds_per_call(fn, 1) for _ in range(repeats))


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


def conv_geometry() -> list[tuple[nn.Conv2d, int, int]]:
    """Each convolution of the Small CNN Zoo network with its input's and its output's side,
    from a probe pass."""
    model = build(ArchSpec(family="cnn"), SHAPE, 10)
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


def padded_taps(padded: torch.Tensor, conv: nn.Conv2d, side: int) -> torch.Tensor:
    """The (P, N, side, side, kh, kw, C) strided view of a padded (P, N, H, W, C) activation
    that holds every output position's patch, tap by tap (no copy)."""
    (kh, kw), (sh, sw) = conv.kernel_size, conv.stride
    p, n, _, _, c = padded.shape
    sp, sn, sy, sx, sc = padded.stride()
    return padded.as_strided((p, n, side, side, kh, kw, c),
                             (sp, sn, sh * sy, sw * sx, sy, sx, sc))


def patch_passes(conv: nn.Conv2d, side_in: int, side: int, p: int, part: int,
                 repeats: int) -> float:
    """Seconds to gather one part's patches for ``conv`` from the activation before its ReLU,
    applying the ReLU (one strided clamp), and to sum their gradients back, tap by tap."""
    kh, kw = conv.kernel_size
    ph, pw = conv.padding
    padded = torch.randn(p, part, side_in + 2 * ph, side_in + 2 * pw, conv.in_channels)
    patches = torch.empty(p, part, side, side, kh, kw, conv.in_channels)
    patch_grads = torch.randn_like(patches)
    taps = padded_taps(padded, conv, side)

    def scatter() -> None:
        padded.zero_()
        for i in range(kh):
            for j in range(kw):
                taps[:, :, :, :, i, j].add_(patch_grads[:, :, :, :, i, j])

    return (best(lambda: torch.clamp(taps, min=0, out=patches), repeats)
            + best(scatter, repeats))


def passes(convs: list[tuple[nn.Conv2d, int, int]], p: int, part: int, repeats: int) -> float:
    """Seconds of one part's memory passes (see the module's docstring): each later
    convolution's patch passes, every ReLU's backward, and the last ReLU's forward (the others
    ride on the gathers)."""
    seconds = 0.0
    for index, (conv, side_in, side) in enumerate(convs):
        before = torch.randn(p, part, side, side, conv.out_channels)  # before the ReLU
        last = index == len(convs) - 1
        # the last activation's gradient is the pooled one, broadcast over the positions
        grad = (torch.randn(p, part, 1, 1, conv.out_channels).expand_as(before) if last
                else torch.randn_like(before))
        seconds += best(lambda grad=grad, before=before:
                        torch.ops.aten.threshold_backward(grad, before, 0), repeats)
        if last:
            after = torch.empty_like(before)
            seconds += best(lambda before=before, after=after:
                            torch.clamp(before, min=0, out=after), repeats)
        if index > 0:  # the first convolution's patches are of the shared input: negligible
            seconds += patch_passes(conv, side_in, side, p, part, repeats)
    return seconds


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
    runs, x, y, plain_step = small_cnn_zoo_case(args.population, args.batch)
    splits = SimpleNamespace(input_shape=SHAPE, num_classes=10)
    wide = Population(runs, splits, "cpu", fused=False)  # type: ignore[arg-type]
    kernel = Population(runs, splits, "cpu")  # type: ignore[arg-type]
    lr = torch.full((args.population,), 1e-3)

    def population_step(population: Population) -> None:
        _, gradient = population.losses_and_gradient(x, y)
        population.step(gradient, lr, None)

    plain, together, fused = [], [], []
    for _ in range(args.repeats):  # in turns, so that the machine's load hits all alike
        plain.append(seconds_per_call(plain_step, 1) * args.population)
        together.append(seconds_per_call(lambda: population_step(wide), 1))
        if kernel.fused is not None:
            fused.append(seconds_per_call(lambda: population_step(kernel), 1))
    convs = conv_geometry()
    parts = args.batch / args.part
    rows = {
        "plain loop, every network alone": min(plain),
        "population (oneDNN, micro-batches)": min(together),
        "products only": products(convs, args.population, args.part, args.repeats) * parts,
        "passes only": passes(convs, args.population, args.part, args.repeats) * parts,
    }
    rows["products + passes"] = rows["products only"] + rows["passes only"]
    if fused:
        rows["population (compiled kernel)"] = min(fused)
    print(f"torch {torch.__version__}, 1 thread; P = {args.population} Small CNN Zoo networks, "
          f"28x28x1, batch {args.batch}; products and passes from parts of {args.part}")
    print(f"{'':38} {'ms per step':>11} {'plain loop over it':>18}")
    for name, seconds in rows.items():
        print(f"{name:38} {seconds * 1e3:11.1f} {min(plain) / seconds:17.2f}x")
    print(f"the 3x target: a step of at most {min(plain) / 3 * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
