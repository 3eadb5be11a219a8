"""The whole measures catalogue on one NiN against one training epoch, in the same run (issue 10).

The network is gengap's ``nin`` family (depth 2, 200 channels: the Fantastic-measures default)
on 32x32x3 inputs, 10 classes, 10,000 training examples. The inputs are Gaussian and the labels
are the measured network's own predictions (its BatchNorm statistics calibrated on the inputs,
its class biases centred), so that its training accuracy is 100 % and the σ′/α′ searches are
defined, as on the study's networks, which fit their training sets; the "initial weights" are
another random initialization. The baseline is one SGD epoch (batch 32, momentum 0.9, lr 0.01,
train mode) of a copy of that network on these data, timed here.

Printed: the epoch's seconds; each shared pass and each measure's own seconds, also in epochs;
the total in epochs. Checks: the batched Monte Carlo forward (vmap) against a loop over
perturbed copies (largest logit difference, and the speed ratio), and the spread of σ′ and α′
over three seeds of the search.

    .venv/bin/python benchmarks/bench_measures.py [--examples 10000] [--width 200]
        [--device auto] [--measures NAMES]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from gengap.device import resolve_device
from gengap.measures import MeasureContext, available, measures, profile
from gengap.models import build
from gengap.specs import ArchSpec, MeasureOptions


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def make_data(model: torch.nn.Module, n: int, device: torch.device):
    """Gaussian inputs labelled by the network itself, after its class biases are centred so
    that every class gets examples."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, 32, 32, generator=gen)
    # BatchNorm running statistics of these inputs first, so that the labelling (eval-mode)
    # network is the one that training (train-mode batch statistics) starts from.
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None  # a cumulative average over the calibration batches
    model.train()
    for i in range(0, n, 500):
        model(x[i : i + 500].to(device))
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.momentum = 0.1
    model.eval()

    def logits() -> torch.Tensor:
        return torch.cat([model(x[i : i + 1000].to(device)) for i in range(0, n, 1000)])

    last = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    last.bias -= logits().mean(0)
    return x, logits().argmax(1).cpu()


def one_epoch(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
              device: torch.device) -> float:
    """Seconds of one SGD epoch at batch 32 (the unit of issue 10)."""
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(1))
    model.train()
    sync(device)
    started = time.perf_counter()
    for i in range(0, len(y), 32):
        idx = order[i : i + 32]
        opt.zero_grad()
        F.cross_entropy(model(x[idx].to(device)), y[idx].to(device)).backward()
        opt.step()
    sync(device)
    return time.perf_counter() - started


def batched_vs_loop(ctx: MeasureContext, draws: int = 8, chunk: int = 128) -> tuple[float, float]:
    """(largest |logit difference|, loop seconds / batched seconds) for ``draws`` noisy copies."""
    net = ctx.flat_net
    gen = torch.Generator(device=net.device).manual_seed(0)
    vectors = net.vector + 0.01 * torch.randn((draws, len(net.vector)), generator=gen,
                                              device=net.device)
    xs = ctx.x_train[: draws * chunk].reshape(draws, chunk, *ctx.x_train.shape[1:]).to(
        net.device)
    net.forward_many(vectors, xs)  # warm-up
    sync(net.device)
    started = time.perf_counter()
    batched = net.forward_many(vectors, xs)
    sync(net.device)
    t_batched = time.perf_counter() - started
    started = time.perf_counter()
    with torch.no_grad():
        looped = torch.stack([net.forward(v, x) for v, x in zip(vectors, xs, strict=True)])
    sync(net.device)
    t_loop = time.perf_counter() - started
    return float((batched - looped).abs().max()), t_loop / t_batched


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=10_000)
    parser.add_argument("--width", type=int, default=200)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--measures", default=None, help="names or groups (default: all)")
    parser.add_argument("--spread", type=int, default=3, help="seeds for the σ′/α′ spread")
    args = parser.parse_args()
    device = resolve_device(args.device)
    torch.manual_seed(0)
    arch = ArchSpec(family="nin", width=args.width, depth=2)
    init = build(arch, (3, 32, 32), 10).to(device)
    model = build(arch, (3, 32, 32), 10).to(device)
    x, y = make_data(model, args.examples, device)  # the model fits its data: accuracy 1
    trainee = build(arch, (3, 32, 32), 10).to(device)
    trainee.load_state_dict(model.state_dict())
    params = sum(p.numel() for p in model.parameters())
    print(f"NiN depth 2, width {args.width}: {params:,} parameters; {args.examples:,} examples "
          f"of 3x32x32; device {device}; torch threads {torch.get_num_threads()}")
    epoch = one_epoch(trainee, x, y, device)  # the unit; the measured network stays as it is
    print(f"one training epoch (SGD, batch 32): {epoch:.2f} s  = the unit below")

    ctx = MeasureContext(model, init, x, y, device=device,
                         trajectory={"steps_to_ce_0.1": None, "steps_to_ce_0.01": None})
    names = available(ctx, args.measures)
    print(f"\n{'kind':8s} {'name':34s} {'seconds':>9s} {'epochs':>8s}", flush=True)
    started = time.perf_counter()
    own: dict[str, float] = {}
    values = 0
    for name in names:  # one at a time, printed as it goes: each new shared pass, then the measure
        before = dict(ctx.pass_seconds)
        result = profile(ctx, [name])
        values += len(result.values)
        for key, seconds in result.pass_seconds.items():
            if key not in before:
                print(f"{'pass':8s} {key:34s} {seconds:9.2f} {seconds / epoch:8.3f}", flush=True)
        own[name] = result.measure_seconds[name]
        if own[name] >= 0.005:
            print(f"{'measure':8s} {name:34s} {own[name]:9.2f} {own[name] / epoch:8.3f}",
                  flush=True)
    total = time.perf_counter() - started
    quick = [s for s in own.values() if s < 0.005]
    label = f"(the other {len(quick)} measures)"
    print(f"{'measure':8s} {label:34s} {sum(quick):9.2f} {sum(quick) / epoch:8.3f}")
    passes = sorted(ctx.pass_seconds.items(), key=lambda kv: -kv[1])
    print("largest costs: " + ", ".join(
        f"{n} {s / epoch:.2f}" for n, s in (passes + sorted(own.items(), key=lambda kv: -kv[1]))
        if s / epoch >= 0.05))
    print(f"training accuracy of the measured network: "
          f"{float(ctx.train_correct.float().mean()):.4f}")
    print(f"\nwhole catalogue ({len(names)} measures, {values} values): "
          f"{total:.1f} s = {total / epoch:.2f} training epochs")
    skipped = sorted(set(measures) - set(names))
    if skipped:
        print(f"not computed here (need a second run or other inputs): {', '.join(skipped)}")

    for key in ("sigma_search", "mag_sigma_search", "alpha_search", "mag_alpha_search"):
        if key in ctx.pass_seconds:
            found = getattr(ctx, key)
            print(f"{key}: value {found.value:.5g}, drop {found.drop:.4f} ± {found.half_width:.4f}"
                  f", {len(found.probes)} probes, {found.examples:,} perturbed example-forwards")

    diff, speedup = batched_vs_loop(ctx)
    print(f"\nbatched Monte Carlo forward (vmap, 8 copies x 128 examples): max |Δlogit| vs a "
          f"loop = {diff:.2e}; loop/batched time = {speedup:.2f}x")

    if args.spread > 1 and "sigma_search" in ctx.pass_seconds:
        for key in ("sigma_search", "alpha_search"):
            values = []
            for seed in range(args.spread):
                again = MeasureContext(model, init, x, y, device=device,
                                       options=MeasureOptions(seed=seed))
                values.append(getattr(again, key).value)
            print(f"{key} over {args.spread} seeds: "
                  + ", ".join(f"{v:.5g}" for v in values)
                  + f"; mean {statistics.mean(values):.5g}, sd {statistics.stdev(values):.2g}")


if __name__ == "__main__":
    main()
