"""gengap's per-layer spectral table against WeightWatcher's ``analyze(randomize=True,
mp_fit=True)`` on the same models, in one run (issue 10's spectral targets).

Models: a NiN (2 blocks, 512 channels, 32x32x3 inputs, 10 classes; BatchNorm folded before
both tools see it) and an MLP with three 1024x1024 hidden layers. Weights are redrawn from a
Student-t law (3 degrees of freedom), so the ESDs have heavy tails like trained layers'. Printed:
seconds of each tool, their ratio, and the largest |α_gengap − α_WW| over layers with ≥ 50
eigenvalues (and over all layers). WeightWatcher is a benchmark-only dependency:

    .venv/bin/pip install weightwatcher
    .venv/bin/python benchmarks/bench_spectral_ww.py [--threads N] [--skip-nin]
"""

from __future__ import annotations

import argparse
import logging
import time

import torch

from gengap.measures.layers import fold_batchnorm
from gengap.measures.spectral import spectral_table
from gengap.models import build
from gengap.specs import ArchSpec

CASES = {
    "NiN 2x512, 32x32x3": (ArchSpec(family="nin", width=512, depth=2), (3, 32, 32)),
    "MLP 3x1024, 1024 inputs": (ArchSpec(family="mlp", width=1024, depth=3), (1024,)),
}


def heavy_tailed(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Weights redrawn from a Student-t law, scaled by 1/√fan-in (seeded)."""
    torch.manual_seed(seed)
    t = torch.distributions.StudentT(3.0)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.copy_(t.sample(p.shape) / p[0].numel() ** 0.5)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--skip-nin", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.disable(logging.WARNING)
    import weightwatcher as ww

    torch.manual_seed(0)
    for label, (spec, shape) in CASES.items():
        if args.skip_nin and label.startswith("NiN"):
            continue
        model = fold_batchnorm(heavy_tailed(build(spec, shape, 10)), torch.randn(2, *shape)).eval()
        started = time.perf_counter()
        ours = spectral_table(model, randomize=True, mp_fit=True)
        ours_s = time.perf_counter() - started
        watcher = ww.WeightWatcher(model=model)
        started = time.perf_counter()
        theirs = watcher.analyze(randomize=True, mp_fit=True)
        theirs_s = time.perf_counter() - started
        # WeightWatcher skips layers with < 8 eigenvalues: match rows by eigenvalue count order
        matched = ours[ours["num_evals"] >= 8].reset_index(drop=True)
        assert list(matched["num_evals"]) == list(theirs["num_evals"].astype(int)), (
            list(matched["num_evals"]), list(theirs["num_evals"]))
        diff = (matched["alpha"] - theirs["alpha"].astype(float)).abs()
        big = matched["num_evals"] >= 50
        print(f"{label}: {len(ours)} layers, eigenvalues per layer {list(ours['num_evals'])}")
        print(f"  WeightWatcher analyze(randomize, mp_fit): {theirs_s:8.2f} s")
        print(f"  gengap spectral_table(randomize, mp_fit): {ours_s:8.2f} s")
        print(f"  speed-up: {theirs_s / ours_s:.1f}x")
        print(f"  max |alpha diff|, layers with >= 50 eigenvalues: {diff[big].max():.2e}; "
              f"all layers: {diff.max():.2e}")
        mp = (matched["mp_softrank"] - theirs["mp_softrank"].astype(float)).abs()
        print(f"  max |mp_softrank diff|: {mp.max():.2e}")


if __name__ == "__main__":
    main()
