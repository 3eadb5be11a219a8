"""The measures' random streams never replay training's: a generator seeded with the run's
seed draws the numbers its weights and its data order came from."""

from __future__ import annotations

import torch
from torch import nn

from gengap.measures.streams import stream_seed


def test_measure_subsets_are_not_the_examples_training_saw_first():
    """A subset drawn with a generator seeded as the run was is the run's first-epoch order:
    for a run stopped inside its first epoch, the examples it trained on."""
    from gengap.measures import MeasureContext
    from gengap.measures.flatness import _subset
    from gengap.measures.pacbayes import example_pool
    from gengap.specs import MeasureOptions, TrainSpec
    from gengap.train.batches import EpochBatches

    n = 1000
    x = torch.arange(n, dtype=torch.float32)[:, None]  # each example's value is its index
    y = torch.arange(n) % 3
    first_epoch = next(EpochBatches(x, y, TrainSpec(batch_size=n), 0, torch.device("cpu"))
                       .epoch())[0][:, 0].long()
    ctx = MeasureContext(nn.Linear(1, 3), x_train=x, y_train=y, device="cpu",
                         options=MeasureOptions(seed=0, subset=256))
    for drawn, size in ((_subset(ctx, 512)[0][:, 0].long(), 512), (example_pool(ctx), 256)):
        shared = len(set(drawn.tolist()) & set(first_epoch[:size].tolist()))
        assert shared < 0.8 * size  # about size²/n by chance


def test_stream_seeds_depend_on_seed_and_purpose_and_are_no_small_integers():
    seeds = {stream_seed(s, p) for s in range(4) for p in ("subset", "example-pool")}
    assert len(seeds) == 8 and min(seeds) > 2**32
    assert stream_seed(3, "subset") == stream_seed(3, "subset")
