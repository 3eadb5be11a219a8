"""A fitted predictor as plain data: JSON that gengap reads back without pickle.

The file holds the feature encoding, the imputation values, every tree of the gradient-boosted
ensemble (node arrays: children, split feature, threshold, leaf value), the training ranges of
each feature, how well the predictor did in cross-validation, and a check: the predictions on
a few training rows. Reading it executes nothing; predicting is a walk down the trees in
numpy, and :func:`load_predictor` recomputes the check rows so that a file that was edited,
truncated or written by an incompatible version is refused instead of trusted.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gengap.atomic_write import write_text_atomically
from gengap.errors import GengapError
from gengap.evaluate.features import Encoding
from gengap.evaluate.targets import TARGETS

FORMAT = "gengap-predictor"
VERSION = 2  # 2: a missing or unseen category is imputed (1: all zeros)
READS = (1, 2)
# what a predictor may predict: the targets, or a metric every run records
PREDICTED = (*TARGETS, "test_loss", "train_acc", "train_loss")


def check_target(target: object) -> None:
    """A one-line :class:`GengapError` unless ``target`` is one a predictor may predict."""
    if target not in PREDICTED:
        raise GengapError(f"unknown target {target!r} (a predictor predicts "
                          f"{', '.join(PREDICTED)})")


@dataclass
class Tree:
    """One regression tree in scikit-learn's node layout (a leaf has children -1)."""

    left: list[int]
    right: list[int]
    feature: list[int]
    threshold: list[float]
    value: list[float]

    def predict(self, x: np.ndarray) -> np.ndarray:
        left, right = np.asarray(self.left), np.asarray(self.right)
        feature, threshold = np.asarray(self.feature), np.asarray(self.threshold)
        node = np.zeros(len(x), dtype=np.int64)
        rows = np.arange(len(x))
        while True:
            inner = left[node] >= 0
            if not inner.any():
                break
            n, r = node[inner], rows[inner]
            # scikit-learn compares float32 inputs with float64 thresholds
            go_left = x[r, feature[n]].astype(np.float32).astype(np.float64) <= threshold[n]
            node[inner] = np.where(go_left, left[n], right[n])
        return np.asarray(self.value)[node]


@dataclass
class Predictor:
    """A gradient-boosted regression predictor of ``target`` from the columns ``features``.

    ``predict(frame)`` gives one value per row; ``trust(frame)`` says, per row, how many
    features were missing (imputed with the training median) and how many lie outside the
    range seen in training (trees predict a constant there: treat such rows with care).
    """

    target: str
    encoding: Encoding
    fill: list[float]
    low: list[float]
    high: list[float]
    init: float
    learning_rate: float
    trees: list[Tree]
    meta: dict[str, Any] = field(default_factory=dict)
    check_rows: list[list[float | None]] = field(default_factory=list)
    check_values: list[float] = field(default_factory=list)

    @property
    def features(self) -> list[str]:
        return self.encoding.features

    def matrix(self, frame: pd.DataFrame) -> np.ndarray:
        x = self.encoding.transform(frame)
        return np.where(np.isnan(x), np.asarray(self.fill, dtype=float)[None, :], x)

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return self.predict_matrix(self.matrix(frame))

    def predict_matrix(self, x: np.ndarray) -> np.ndarray:
        out = np.full(len(x), self.init, dtype=float)
        for tree in self.trees:
            out += self.learning_rate * tree.predict(x)
        return out

    def trust(self, frame: pd.DataFrame) -> pd.DataFrame:
        raw = self.encoding.transform(frame)
        low, high = np.asarray(self.low), np.asarray(self.high)
        outside = (raw < low[None, :] - 1e-12) | (raw > high[None, :] + 1e-12)
        return pd.DataFrame(
            {"imputed": self.encoding.missing(raw).sum(axis=1),
             "out_of_range": outside.sum(axis=1)},
            index=frame.index,
        )

    # -- files ---------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "target": self.target,
            "features": self.encoding.features,
            "categories": self.encoding.categories,
            "fill": self.fill,
            "low": self.low,
            "high": self.high,
            "init": self.init,
            "learning_rate": self.learning_rate,
            "trees": [asdict(t) for t in self.trees],
            "meta": self.meta,
            # the target too, so that an edited target is refused (files before it lack it)
            "check": {"rows": self.check_rows, "values": self.check_values,
                      "target": self.target},
        }

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        data = _finite(self.to_json())
        data["check"]["digest"] = content_digest(data)
        text = json.dumps(data, indent=1, allow_nan=False)
        write_text_atomically(path, text)
        return path


def load_predictor(path: str | Path) -> Predictor:
    """Read a predictor file; a foreign, damaged or edited file is a :class:`GengapError`."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise GengapError(f"{path}: no such predictor file") from None
    except RecursionError:  # nesting deeper than the parser goes
        raise GengapError(f"{path}: not a predictor file (nested too deeply)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise GengapError(f"{path}: not a predictor file ({err})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise GengapError(f"{path}: not a gengap predictor file")
    version = data.get("version")
    if version not in READS:
        raise GengapError(f"{path}: predictor format version {version!r}; this gengap reads "
                          f"versions {', '.join(map(str, READS))}")
    target, check = data.get("target"), data.get("check")
    try:
        check_target(target)
    except GengapError as err:
        raise GengapError(f"{path}: {err}") from None
    if isinstance(check, dict) and check.get("target", target) != target:
        raise GengapError(f"{path}: target {target!r}, but the predictions recorded at training "
                          f"time are of {check['target']!r}; the file was changed or damaged")
    if isinstance(check, dict) and "digest" in check and check["digest"] != content_digest(data):
        raise GengapError(f"{path}: its content does not match the digest written with it; the "
                          "file was changed or damaged (fit it again)")
    try:
        encoding = Encoding(list(data["features"]), dict(data["categories"]),
                            unseen_as_missing=version >= 2)
        width = len(encoding.columns)
        trees = [Tree(**t) for t in data["trees"]]
        predictor = Predictor(
            target=str(target),
            encoding=encoding,
            fill=[float(v) for v in data["fill"]],
            low=[_num(v) for v in data["low"]],
            high=[_num(v) for v in data["high"]],
            init=float(data["init"]),
            learning_rate=float(data["learning_rate"]),
            trees=trees,
            meta=_meta(data.get("meta", {})),
            check_rows=data["check"]["rows"],
            check_values=[float(v) for v in data["check"]["values"]],
        )
        for t in trees:
            _check_node_types(t)
            sizes = {len(t.left), len(t.right), len(t.feature), len(t.threshold), len(t.value)}
            if len(sizes) != 1 or not t.left:
                raise ValueError("a tree's node arrays are empty or of different lengths")
            inner = np.asarray(t.left) >= 0
            split_on = np.asarray(t.feature)[inner]
            if (split_on >= width).any() or (split_on < 0).any():
                raise ValueError("a tree's node arrays disagree with the features")
            if (np.asarray(t.left)[inner] >= len(t.left)).any() or (
                np.asarray(t.right)[inner] >= len(t.right)
            ).any() or (np.asarray(t.right)[inner] < 0).any():
                raise ValueError("a tree points outside itself")
            if not all(_later(t)):
                raise ValueError("a tree's children must come after their parent")
        if {len(predictor.fill), len(predictor.low), len(predictor.high)} != {width}:
            raise ValueError("imputation values or ranges disagree with the features")
        rows = np.array([[math.nan if v is None else v for v in r] for r in predictor.check_rows],
                        dtype=float).reshape(-1, width)
        if not len(rows) or len(rows) != len(predictor.check_values):
            raise ValueError("the recorded predictions that check the trees are missing")
        reproduced = predictor.predict_matrix(rows)
    except (KeyError, TypeError, ValueError, IndexError) as err:
        raise GengapError(f"{path}: malformed predictor file ({err})") from None
    if not np.allclose(reproduced, predictor.check_values, rtol=1e-9, atol=1e-12):
        raise GengapError(f"{path}: the trees do not reproduce the predictions recorded at "
                          f"training time; the file was changed or damaged")
    return predictor


def content_digest(data: dict[str, Any]) -> str:
    """SHA-256 of the file's content (parsed JSON, keys sorted) without the digest itself:
    any edit shows, the recorded predictions catch only those that change the trees' output
    (feature names swapped, categories added changed predictions unnoticed). Files written
    before it have no digest and are checked by their predictions alone."""
    check = {k: v for k, v in data.get("check", {}).items() if k != "digest"}
    canonical = json.dumps({**data, "check": check}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _check_node_types(tree: Tree) -> None:
    """Node indices must be integers and thresholds and values numbers (numpy would cut 1.5
    to 1 or fail later on text)."""
    for name in ("left", "right", "feature"):
        if not all(type(v) is int for v in getattr(tree, name)):
            raise ValueError(f"a tree's {name} holds something other than integers")
    for name in ("threshold", "value"):
        if not all(type(v) in (int, float) for v in getattr(tree, name)):
            raise ValueError(f"a tree's {name} holds something other than numbers")


def _meta(meta: Any) -> dict[str, Any]:
    """The training record (``zoos``: names; ``runs``: the training runs' ids; ``cv``: the
    scheme and numbers), checked as far as ``predict apply`` reads it."""
    if not isinstance(meta, dict):
        raise ValueError("meta is not a table")
    cv = meta.get("cv", {})
    for key in ("zoos", "runs"):
        names = meta.get(key, [])
        if not isinstance(names, list) or not all(isinstance(z, str) for z in names):
            raise ValueError(f"meta.{key} is not a list of names")
    if not isinstance(cv, dict) or not all(  # null: a NaN when saved
            v is None or type(v) in (int, float) for k, v in cv.items() if k != "scheme"):
        raise ValueError("meta.cv is not a table of numbers")
    return dict(meta)


def _later(tree: Tree) -> list[bool]:
    return [(lc < 0) or (lc > i and rc > i)
            for i, (lc, rc) in enumerate(zip(tree.left, tree.right, strict=True))]


def _num(value: Any) -> float:
    return math.nan if value is None else float(value)


def _finite(value: Any) -> Any:
    """NaN and infinities as null: JSON has no such numbers."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
