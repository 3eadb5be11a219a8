"""Binary operation tables mod p, the data of grokking studies (Power et al. 2022): every
equation x∘y = c over 0..p-1 (for division, y ≠ 0), shuffled by the seed and split into
``train_split`` of the equations for training and the rest for testing. Inputs are int64
tokens (x, op, y, =): the numbers are tokens 0..p-1, the operation token is p and '=' is p+1
(vocab_size = p + 2); the label is c (p classes)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from gengap.data.randomize import knob_rng
from gengap.data.sources import RawSplits, SourceOptions, register_source
from gengap.specs import DataSpec

Op = Callable[[np.ndarray, np.ndarray, int], np.ndarray]


def _inverse(y: np.ndarray, p: int) -> np.ndarray:
    return np.array([pow(int(v), -1, p) for v in y], dtype=np.int64)


# The paper's operations over Z_p (its S5 permutation tasks are not here).
OPERATIONS: dict[str, tuple[str, Op]] = {
    "add": ("x + y", lambda x, y, p: x + y),
    "sub": ("x - y", lambda x, y, p: x - y),
    "mul": ("x * y", lambda x, y, p: x * y),
    "div": ("x / y (y != 0)", lambda x, y, p: x * _inverse(y, p)),
    "div_or_sub": (
        "x / y if y is odd, else x - y",
        lambda x, y, p: np.where(y % 2 == 1, x * _inverse(np.where(y % 2 == 1, y, 1), p), x - y),
    ),
    "square_sum": ("x^2 + y^2", lambda x, y, p: x * x + y * y),
    "quad": ("x^2 + xy + y^2", lambda x, y, p: x * x + x * y + y * y),
    "quad_x": ("x^2 + xy + y^2 + x", lambda x, y, p: x * x + x * y + y * y + x),
    "cube_xy": ("x^3 + xy", lambda x, y, p: x * x % p * x + x * y),
    "cube_xy2_y": ("x^3 + xy^2 + y", lambda x, y, p: x * x % p * x + x * (y * y % p) + y),
}


OpName = Literal[
    "add", "sub", "mul", "div", "div_or_sub", "square_sum", "quad", "quad_x", "cube_xy",
    "cube_xy2_y",
]


def _is_prime(p: int) -> bool:
    return p >= 2 and all(p % d for d in range(2, int(p**0.5) + 1))


class ModularOptions(SourceOptions):
    p: int = Field(97, ge=2, le=2000, description="the modulus")
    op: OpName = Field(
        "add", description="; ".join(f"{k}: {v[0]}" for k, v in OPERATIONS.items())
    )
    train_split: float = Field(
        0.5, gt=0, lt=1, description="share of all equations used for training"
    )

    @model_validator(mode="after")
    def _check(self) -> ModularOptions:
        if self.op in ("div", "div_or_sub") and not _is_prime(self.p):
            raise ValueError(f"op {self.op} needs a prime p (inverses mod {self.p} do not exist)")
        return self


def equations(p: int, op: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every (x, y, x∘y mod p) of the table, in row order."""
    x, y = (a.reshape(-1) for a in np.meshgrid(np.arange(p), np.arange(p), indexing="ij"))
    if op == "div":
        x, y = x[y != 0], y[y != 0]
    return x, y, OPERATIONS[op][1](x, y, p) % p


@register_source(
    "modular", "x∘y mod p tables of grokking (+, -, *, / and more), as tokens",
    options=ModularOptions,
)
def make_modular(spec: DataSpec, options: ModularOptions, data_dir: Path | None) -> RawSplits:
    p = options.p
    x, y, c = equations(p, options.op)
    tokens = np.stack([x, np.full_like(x, p), y, np.full_like(x, p + 1)], axis=1)
    order = knob_rng(spec.seed, "modular").permutation(len(c))
    n_train = min(max(round(len(c) * options.train_split), 1), len(c) - 1)
    train, test = order[:n_train], order[n_train:]
    return RawSplits(
        tokens[train], c[train], tokens[test], c[test], num_classes=p, vocab_size=p + 2
    )
