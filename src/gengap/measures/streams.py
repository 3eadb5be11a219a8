"""Random streams of the measures that cannot meet the streams of training.

Training seeds torch's global generator with the run's seed (0, 1, ... in most zoos) right
before it initializes the network, so a measure whose generator is seeded with the same small
integer draws the very numbers the weights were made from. For a draw that is then sorted
against the weights (the shuffle of the randomized ESD) that is no longer random at all: a
first layer initialized from those uniforms came out sorted, not shuffled; and a permutation
of the examples is the run's first-epoch order. The generators that draw such permutations
(subsets of the training set, sample orders) and the shuffle therefore seed with the
measure's seed hashed with what they are for. Draws that only add noise, or pick examples
with replacement per Monte Carlo draw, keep their plain seeds: no value was found to depend
on the collision there.
"""

from __future__ import annotations

import hashlib

import torch


def stream_seed(seed: int, purpose: str) -> int:
    """A 63-bit seed for ``purpose`` (a fixed name) from a measure seed: the same pair always
    gives the same seed, and no small integer seed's stream is another's."""
    digest = hashlib.sha256(f"gengap-measure/{purpose}/{seed}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def measure_generator(seed: int, purpose: str) -> torch.Generator:
    """A CPU generator seeded with :func:`stream_seed`."""
    return torch.Generator().manual_seed(stream_seed(seed, purpose))
