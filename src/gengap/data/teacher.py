"""Random teacher networks and class-balanced sampling, shared by the synthetic sources
(``hidden-manifold``, ``teacher-student``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.special import erf

from gengap.errors import GengapError

ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "relu": lambda u: np.maximum(u, 0.0),
    "tanh": np.tanh,
    "erf": lambda u: erf(u / np.sqrt(2.0)),  # the hidden manifold code's g(x) = erf(x/√2)
    "sign": lambda u: np.where(u >= 0, 1.0, -1.0),  # sign(0) = +1
    "linear": lambda u: u,
}


@dataclass(frozen=True)
class Teacher:
    """A fully connected network without biases: hidden layers act as g(W h / √fan_in) with
    W ~ N(0, 1); the last layer is linear; the label is the argmax of its outputs."""

    weights: tuple[np.ndarray, ...]
    activation: str

    def logits(self, x: np.ndarray) -> np.ndarray:
        g = ACTIVATIONS[self.activation]
        h = x
        for w in self.weights[:-1]:
            h = g(h @ w.T / np.sqrt(w.shape[1]))
        last = self.weights[-1]
        return h @ last.T / np.sqrt(last.shape[1])

    def labels(self, x: np.ndarray) -> np.ndarray:
        return self.logits(x).argmax(axis=1).astype(np.int64)


def random_teacher(
    rng: np.random.Generator, in_dim: int, width: int, depth: int, num_classes: int,
    activation: str,
) -> Teacher:
    """A teacher with ``depth`` hidden layers of ``width`` units and ``num_classes`` outputs."""
    dims = [in_dim] + [width] * depth + [num_classes]
    weights = tuple(rng.standard_normal((dims[i + 1], dims[i])) for i in range(len(dims) - 1))
    return Teacher(weights, activation)


def balanced_sample(
    draw: Callable[[int], tuple[np.ndarray, np.ndarray]], n: int, num_classes: int,
    rng: np.random.Generator, source: str,
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` examples with equal class counts (the first n mod K classes get one more),
    by rejection from ``draw(batch) -> (inputs, labels)``; returned in random order."""
    quota = np.full(num_classes, n // num_classes)
    quota[: n % num_classes] += 1
    kept_x: list[np.ndarray] = []
    kept_y: list[np.ndarray] = []
    have = np.zeros(num_classes, dtype=np.int64)
    batch = max(2 * n, 1000)
    for _ in range(200):
        x, y = draw(batch)
        for k in np.flatnonzero(have < quota):
            idx = np.flatnonzero(y == k)[: quota[k] - have[k]]
            kept_x.append(x[idx])
            kept_y.append(y[idx])
            have[k] += len(idx)
        if (have >= quota).all():
            x, y = np.concatenate(kept_x), np.concatenate(kept_y)
            order = rng.permutation(len(y))
            return x[order], y[order]
    rare = int(np.argmin(have / np.maximum(quota, 1)))
    raise GengapError(
        f"{source}: the random teacher almost never outputs class {rare}; set balanced = "
        "false, fewer classes, or another seed"
    )
