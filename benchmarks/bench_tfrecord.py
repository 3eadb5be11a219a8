"""Reading PGDL TFRecord shards: gengap's reader against the floor of reading the same bytes and
checking their CRC-32C checksums (what any correct reader must do), measured in the same run.

A synthetic CIFAR-sized shard (N images of 32x32x3 float32, int32 labels, serialized as the
PGDL tasks are) is written to a temporary folder. Printed: MB/s of both, and their ratio.

    .venv/bin/python benchmarks/bench_tfrecord.py [--images 10000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import google_crc32c
import numpy as np

from gengap.interop.pgdl.tfrecord import (
    build_example,
    read_shards,
    serialize_tensor,
    write_records,
)


def best_of(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.images, 32, 32, 3)).astype(np.float32)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "shard_0.tfrecord"
        write_records(path, [
            build_example({"inputs": serialize_tensor(image),
                           "output": serialize_tensor(np.asarray(i % 10, dtype=np.int32))})
            for i, image in enumerate(x)
        ])
        size_mb = path.stat().st_size / 1e6

        def floor() -> None:
            google_crc32c.value(path.read_bytes())

        def gengap() -> None:
            images, _ = read_shards([path])
            assert images.shape == x.shape

        t_floor, t_gengap = best_of(floor), best_of(gengap)
    print(f"shard of {args.images} images, {size_mb:.0f} MB")
    print(f"read + crc32c floor : {size_mb / t_floor:8.0f} MB/s")
    print(f"gengap read_shards  : {size_mb / t_gengap:8.0f} MB/s "
          f"({t_gengap / t_floor:.1f}x the floor's time)")


if __name__ == "__main__":
    main()
