"""The whole measures catalogue on one trained NiN against one training epoch, in the same run
(issue 10).

The network is gengap's ``nin`` family (depth 2, 200 channels: the Fantastic-measures default)
on 32x32x3 inputs, 10 classes, 10,000 training examples. The data are synthetic and learnable:
each class has a smooth random template (8x8 upsampled to 32x32), an example is
``amplitude`` × its class's template plus unit Gaussian noise. The network is trained from its
initialization (kept as the "initial weights") by SGD (batch 32, momentum 0.9, lr 0.01), as in
Dziugaite et al.'s defaults; its first epoch is timed and is the unit; ``--train-epochs`` more
are optional. The measured network is therefore a real (if briefly) trained one: its σ′ and α′
searches probe a loss surface shaped by training, not a network labelling its own outputs.

Printed: the epoch's seconds; each shared pass and each measure's own seconds, also in epochs;
the total in epochs, also against the same epoch timed again after the catalogue (the machine's
speed drifts: the 2-core development machine's epoch took 32-46 s between runs); each σ′/α′
search (value, drop ± its interval, probes, example-forwards).
Checks, after the timing:
- deterministic measures against straightforward implementations (benchmarks/
  measures_reference.py: BatchNorm folded by hand in float64, logits of the unfolded model),
  largest relative difference;
- σ′ and α′ against their definitions: the drop at the value found, estimated the reference's
  way (σ′: 10 noise draws, each over ``--check-examples`` examples; α′: a cold projected
  gradient ascent of 10 steps on batches of 256, the drop on ``--check-examples`` examples),
  reported with its standard error next to the target 0.1 ± tolerance.

    .venv/bin/python benchmarks/bench_measures.py [--examples 10000] [--width 200]
        [--train-epochs 0] [--device auto] [--measures NAMES] [--check-examples 1000]
        [--precision auto|float32|bfloat16]
"""

from __future__ import annotations

import argparse
import copy
import math
import time

import torch
import torch.nn.functional as F
from measures_reference import alpha_drop, deterministic, sigma_drop

from gengap.device import resolve_device
from gengap.measures import MeasureContext, available, measures, profile
from gengap.memory_reuse import reuse_large_blocks
from gengap.models import build
from gengap.specs import PRECISIONS, ArchSpec, MeasureOptions


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_data(n: int, amplitude: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Class templates (smooth, unit variance) times ``amplitude`` plus unit Gaussian noise."""
    gen = torch.Generator().manual_seed(seed)
    templates = F.interpolate(torch.randn(10, 3, 8, 8, generator=gen), size=(32, 32),
                              mode="bilinear", align_corners=False)
    templates /= templates.std()
    y = torch.randperm(n, generator=gen) % 10
    x = amplitude * templates[y] + torch.randn(n, 3, 32, 32, generator=gen)
    return x, y


def one_epoch(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
              device: torch.device, opt: torch.optim.Optimizer, seed: int) -> float:
    """Seconds of one SGD epoch at batch 32 (the unit of issue 10)."""
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=10_000)
    parser.add_argument("--width", type=int, default=200)
    parser.add_argument("--amplitude", type=float, default=0.5, help="template / noise")
    parser.add_argument("--train-epochs", type=int, default=0, help="epochs after the timed one")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--measures", default=None, help="names or groups (default: all)")
    parser.add_argument("--skip", default="", help="comma-separated measures not to time")
    parser.add_argument("--check-examples", type=int, default=1000)
    parser.add_argument("--precision", default="auto", choices=PRECISIONS,
                        help="MeasureOptions.precision of the Monte Carlo passes")
    args = parser.parse_args()
    device = resolve_device(args.device)
    if device.type == "cpu":
        reuse_large_blocks()  # as a CPU MeasureContext does: for the epoch too, alike
    torch.manual_seed(0)
    arch = ArchSpec(family="nin", width=args.width, depth=2)
    model = build(arch, (3, 32, 32), 10).to(device)
    init = copy.deepcopy(model)
    x, y = make_data(args.examples, args.amplitude)
    params = sum(p.numel() for p in model.parameters())
    print(f"NiN depth 2, width {args.width}: {params:,} parameters; {args.examples:,} examples "
          f"of 3x32x32 (template amplitude {args.amplitude}); device {device}; torch threads "
          f"{torch.get_num_threads()}", flush=True)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    epoch = one_epoch(model, x, y, device, opt, seed=1)
    print(f"one training epoch (SGD, batch 32): {epoch:.1f} s  = the unit below", flush=True)
    for k in range(args.train_epochs):
        one_epoch(model, x, y, device, opt, seed=2 + k)
    model.eval()

    ctx = MeasureContext(model, init, x, y, device=device,
                         options=MeasureOptions(precision=args.precision),
                         trajectory={"steps_to_ce_0.1": None, "steps_to_ce_0.01": None})
    skip = {n for n in args.skip.split(",") if n}
    names = [n for n in available(ctx, args.measures) if n not in skip]
    ctx.plan(names)  # as compute() and profile() do with all of them: passes serve several
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
    # the machine's speed drifts over minutes: time the unit again after the catalogue (on a
    # copy, so the checks below see the measured network) and report against both
    again = copy.deepcopy(model).train()
    epoch_after = one_epoch(again, x, y, device,
                            torch.optim.SGD(again.parameters(), lr=0.01, momentum=0.9), seed=1)
    # for scale only: the same epoch with its forward under bfloat16 autocast, the arithmetic
    # the Monte Carlo passes may use (the unit stays the float32 epoch above)
    again = copy.deepcopy(model).train()
    # (without autocast's weight cache, which would keep the first step's weights all epoch)
    with torch.autocast(device.type, dtype=torch.bfloat16, cache_enabled=False):
        epoch_bf16 = one_epoch(again, x, y, device,
                               torch.optim.SGD(again.parameters(), lr=0.01, momentum=0.9), seed=1)
    del again
    quick = [s for s in own.values() if s < 0.005]
    label = f"(the other {len(quick)} measures)"
    print(f"{'measure':8s} {label:34s} {sum(quick):9.2f} {sum(quick) / epoch:8.3f}")
    passes = sorted(ctx.pass_seconds.items(), key=lambda kv: -kv[1])
    print("largest costs (epochs): " + ", ".join(
        f"{n} {s / epoch:.2f}" for n, s in (passes + sorted(own.items(), key=lambda kv: -kv[1]))
        if s / epoch >= 0.05))
    accuracy = float(ctx.train_correct.float().mean())
    print(f"training accuracy of the measured network: {accuracy:.4f}")
    print(f"\nwhole catalogue ({len(names)} measures, {values} values): "
          f"{total:.1f} s = {total / epoch:.2f} training epochs", flush=True)
    print(f"the same epoch timed after the catalogue: {epoch_after:.1f} s, against which the "
          f"catalogue is {total / epoch_after:.2f} epochs (against the mean of both: "
          f"{2 * total / (epoch + epoch_after):.2f})", flush=True)
    print(f"Monte Carlo passes (σ′, α′, module criticality) in "
          f"{ctx.details.get('monte_carlo_precision', '-')} (precision {args.precision}); "
          f"for scale, the epoch with its forward under bfloat16 autocast: {epoch_bf16:.1f} s "
          f"(the catalogue would be {total / epoch_bf16:.2f} of those)", flush=True)
    skipped = sorted(set(measures) - set(names) - skip)
    if skipped:
        print(f"not computed here (need a second run or other inputs): {', '.join(skipped)}")
    if skip:
        print(f"left out by --skip: {', '.join(sorted(skip))}")

    searches = {}
    for key in ("sigma_search", "mag_sigma_search", "alpha_search", "mag_alpha_search"):
        if key in ctx.pass_seconds:
            found = searches[key] = getattr(ctx, key)
            print(f"{key}: value {found.value:.5g}, drop {found.drop:.4f} ± {found.half_width:.4f}"
                  f" (95 % interval), {len(found.probes)} probes, "
                  f"{found.examples:,} perturbed example-forwards", flush=True)

    print("\nchecks (not timed):", flush=True)
    check_deterministic(ctx, model, init, x, y)
    check_searches(searches, model, x, y, args.check_examples, ctx.options.tolerance)


def check_deterministic(ctx: MeasureContext, model, init, x, y) -> None:
    expected = deterministic(model.cpu(), init.cpu(), x, y)
    worst, rows = 0.0, []
    for name, value in expected.items():
        got = ctx.value(name)
        rel = abs(got - value) / max(abs(value), 1e-300)
        worst = max(worst, rel)
        rows.append(f"{name} {rel:.1e}")
    print(f"deterministic measures vs straightforward implementations ({len(expected)}): "
          f"largest relative difference {worst:.1e} ({'<=' if worst <= 1e-5 else '>'} 1e-5)")
    print("  " + ", ".join(rows), flush=True)


def check_searches(searches, model, x, y, n: int, tolerance: float) -> None:
    gen = torch.Generator().manual_seed(7)
    pick = torch.randperm(len(y), generator=gen)[:n]
    xs, ys = x[pick], y[pick]
    for key, found in searches.items():
        if not math.isfinite(found.value):
            print(f"{key}: NaN (no σ′/α′ for this network)")
            continue
        magnitude = key.startswith("mag")
        if "sigma" in key:
            drop, se = sigma_drop(model.cpu(), xs, ys, found.value, magnitude)
            how = f"10 noise draws x {n} examples"
        else:
            drop, se = alpha_drop(model.cpu(), x, y, found.value, magnitude, xs, ys)
            how = f"cold ascent 10 steps x 256, drop on {n} examples"
        if found.value == 0:  # the search's claim: ε alone drops at least the target
            holds = drop + 2 * se >= 0.1 - tolerance
            print(f"{key} = 0: straightforward drop at ε alone {drop:.4f} ± {se:.4f} (se; {how}); "
                  f"{'agrees' if holds else 'DISAGREES'}: at least 0.1 - {tolerance} within 2 se",
                  flush=True)
            continue
        inside = abs(drop - 0.1) <= tolerance + 2 * se
        print(f"{key} = {found.value:.5g}: straightforward drop there {drop:.4f} ± {se:.4f} (se; "
              f"{how}); target 0.1 ± {tolerance}: "
              f"{'agrees' if inside else 'DISAGREES'} within tolerance + 2 se", flush=True)


if __name__ == "__main__":
    main()
