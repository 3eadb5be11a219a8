"""The measures' batch size: the largest power of two whose largest layer output fits in half
the last-level cache on a CPU."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from gengap.measures import MeasureContext
from gengap.measures.batching import (
    FALLBACK_CACHE,
    GPU_BATCH,
    auto_batch_size,
    largest_output_bytes,
    last_level_cache,
)


def net() -> nn.Module:
    return nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 40), nn.ReLU(), nn.Linear(40, 2))


def test_last_level_cache_reads_sysfs(tmp_path: Path) -> None:
    for name, size in (("index0", "48K"), ("index2", "1024K"), ("index3", "32768K")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "size").write_text(size + "\n")
    assert last_level_cache(tmp_path) == 32 * 2**20
    assert last_level_cache(tmp_path / "missing") == FALLBACK_CACHE


def test_largest_output_is_the_widest_layer() -> None:
    assert largest_output_bytes(net(), torch.randn(1, 3)) == 40 * 4  # float32
    assert largest_output_bytes(net().double(), torch.randn(1, 3, dtype=torch.float64)) == 320


def test_batch_fits_half_the_cache() -> None:
    cpu, example = torch.device("cpu"), torch.randn(1, 3)
    assert auto_batch_size(net(), example, cpu, cache=2 * 160 * 64) == 64
    assert auto_batch_size(net(), example, cpu, cache=2 * 160 * 64 - 1) == 32
    assert auto_batch_size(net(), example, cpu, cache=1) == 16
    assert auto_batch_size(net(), example, cpu, cache=2**40) == 1024
    assert auto_batch_size(net(), None, cpu) == GPU_BATCH
    assert auto_batch_size(net(), example, torch.device("cuda")) == GPU_BATCH


def test_context_picks_it_unless_given() -> None:
    x, y = torch.randn(8, 3), torch.randint(0, 2, (8,))
    expected = auto_batch_size(net(), x[:1], torch.device("cpu"))
    assert MeasureContext(net(), x_train=x, y_train=y, device="cpu").batch_size == expected
    assert MeasureContext(net(), x_train=x, y_train=y, device="cpu", batch_size=7).batch_size == 7
