"""The PGDL conditional mutual information: gengap's vectorised scorer against the scorer's
algorithm written as the competition's code runs it (Python loops over every ordered pair of
models for every ordered pair of hyperparameters), timed in the same run on the same grids.
Also times the Jiang et al. table (every |S| <= 2) and the bootstrap intervals of tau and Psi.

    .venv/bin/python benchmarks/bench_cmi.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import itertools
import math
import time

import numpy as np
import pandas as pd

from gengap.evaluate import cmi_by_set, granulated_kendall_interval, kendall_interval, pgdl_cmi


def loop_scorer(frame: pd.DataFrame, measure: str, axes: list[str]) -> float:
    """The scorer's algorithm, pair by pair (the baseline)."""
    rows = frame.to_dict("records")
    best = math.inf
    for h1, h2 in itertools.permutations(axes, 2):
        levels1, levels2 = sorted(frame[h1].unique()), sorted(frame[h2].unique())
        keys = [str(a) + str(b) + str(c) + str(d) for a in levels1 for b in levels1
                for c in levels2 for d in levels2]
        tables = {k: np.zeros((2, 2)) for k in keys}
        for i in rows:
            for j in rows:
                key = str(i[h1]) + str(j[h1]) + str(i[h2]) + str(j[h2])
                tables[key][0 if i["gap"] > j["gap"] else 1,
                            0 if i[measure] > j[measure] else 1] += 1
        mis, hs = [], []
        for t in tables.values():
            p = t / t.sum()
            pa, pb = p.sum(1), p.sum(0)
            mis.append(sum(p[a, b] * math.log2(p[a, b] / (pa[a] * pb[b]))
                           for a in range(2) for b in range(2) if p[a, b]))
            hs.append(-sum(x * math.log2(x + 1e-12) for x in pa))
        best = min(best, np.mean(mis) / np.mean(hs))
    return best


def grid(sizes: tuple[int, ...], seed: int = 0) -> tuple[pd.DataFrame, list[str]]:
    axes = [f"h{i}" for i in range(len(sizes))]
    frame = pd.DataFrame(list(itertools.product(*[range(k) for k in sizes])), columns=axes)
    rng = np.random.default_rng(seed)
    return frame.assign(gap=rng.random(len(frame)), m=rng.random(len(frame))), axes


def best_of(repeats: int, fn) -> tuple[float, object]:
    times, value = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - start)
    return min(times), value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    for sizes in ((2, 2, 2, 2, 2, 3), (3, 3, 2, 3), (2, 2, 2, 2, 3, 3, 2)):
        frame, axes = grid(sizes)
        base, expected = best_of(1, lambda f=frame, a=axes: loop_scorer(f, "m", a))
        ours, value = best_of(args.repeats, lambda f=frame, a=axes: pgdl_cmi(f, "m", a))
        assert abs(value - expected) < 1e-12, (value, expected)
        jiang, _ = best_of(args.repeats, lambda f=frame, a=axes: cmi_by_set(f, "m", a))
        print(f"{len(frame):4d} models {sizes}: loop scorer {base:7.3f} s, gengap "
              f"{ours:7.4f} s ({base / ours:6.1f}x faster, same value {value:.6f}); "
              f"all |S|<=2 sets {jiang:.4f} s")
    frame, axes = grid((3, 3, 3, 3, 3, 3, 3))
    t_tau, _ = best_of(1, lambda: kendall_interval(frame["m"], frame["gap"], 1000))
    t_psi, _ = best_of(1, lambda: granulated_kendall_interval(frame, "m", "gap", axes, 1000))
    t_cmi, _ = best_of(1, lambda: cmi_by_set(frame, "m", axes))
    print(f"{len(frame)} models (3^7, Jiang et al.'s grid): tau interval (1000 resamples) "
          f"{t_tau:.2f} s, Psi interval {t_psi:.2f} s, CMI over all |S|<=2 sets {t_cmi:.2f} s")


if __name__ == "__main__":
    main()
