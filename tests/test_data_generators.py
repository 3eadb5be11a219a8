"""The embedded sources: determinism, shapes and dtypes, and labels recomputed independently."""

from __future__ import annotations

import itertools
import statistics
from collections import Counter

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

from gengap.data import load, summarize
from gengap.errors import GengapError
from gengap.specs import DataSpec

SMALL = {
    "digits": {},
    "mnist1d": {"num_samples": 300},
    "pvr-vector": {"n_train": 300, "n_test": 100, "window": 3, "aggregation": "median"},
    "pvr-visual": {"n_train": 200, "n_test": 50},
    "modular": {"p": 13},
    "hidden-manifold": {"n_train": 200, "n_test": 50, "input_dim": 30},
    "teacher-student": {"n_train": 200, "n_test": 50, "num_classes": 3},
}


def _tensors(spec: DataSpec) -> list[torch.Tensor]:
    s = load(spec)
    return [s.x_train, s.y_train, s.x_test, s.y_test]


@pytest.mark.parametrize("name", sorted(SMALL))
def test_same_spec_gives_identical_tensors_and_another_seed_does_not(name: str) -> None:
    spec = DataSpec(name=name, options=SMALL[name], seed=3, label_noise=0.1)
    first, again = _tensors(spec), _tensors(DataSpec.model_validate_json(spec.canonical_json()))
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    other = _tensors(spec.model_copy(update={"seed": 4}))
    assert not all(
        a.shape == b.shape and torch.equal(a, b) for a, b in zip(first, other, strict=True)
    )


@pytest.mark.parametrize(
    ("name", "kind", "dtype"),
    [
        ("digits", "image", torch.float32),
        ("mnist1d", "vector", torch.float32),
        ("pvr-vector", "tokens", torch.int64),
        ("pvr-visual", "image", torch.float32),
        ("modular", "tokens", torch.int64),
        ("hidden-manifold", "vector", torch.float32),
        ("teacher-student", "vector", torch.float32),
    ],
)
def test_input_kinds_and_dtypes(name: str, kind: str, dtype: torch.dtype) -> None:
    s = load(DataSpec(name=name, options=SMALL[name]))
    assert s.kind == kind and s.x_train.dtype == dtype and s.x_test.dtype == dtype
    assert s.y_train.dtype == torch.int64 and int(s.y_train.max()) < s.num_classes
    if kind == "tokens":
        assert s.x_train.ndim == 2 and int(s.x_train.max()) < s.vocab_size
        assert int(s.x_train.min()) >= 0
    else:
        assert s.vocab_size is None


def test_mnist1d_seed_42_is_the_published_dataset() -> None:
    # Fingerprints of the package's frozen mnist1d_data.pkl (shared/reference/tasks.md §4.3).
    s = load(DataSpec(name="mnist1d", seed=42, normalize=False))
    assert s.x_train.shape == (4000, 40) and s.x_test.shape == (1000, 40)
    assert s.y_train[:20].tolist() == [2, 6, 4, 5, 6, 6, 6, 0, 3, 1, 6, 9, 4, 3, 4, 5, 1, 9, 0, 3]
    assert s.y_test[:20].tolist() == [2, 6, 3, 9, 4, 3, 1, 9, 5, 2, 0, 7, 7, 1, 4, 6, 1, 4, 3, 9]
    expected = [-0.332006, -0.47191, -0.778697, -1.009741, -0.882353, 0.103935]
    assert np.allclose(s.x_train[0, :6].numpy(), expected, atol=1e-5)
    assert summarize(s).train_counts == (398, 396, 411, 394, 394, 402, 401, 404, 402, 398)


def test_mnist1d_leaves_the_global_random_state_alone() -> None:
    np.random.seed(7)
    before = np.random.get_state()[1].copy()
    load(DataSpec(name="mnist1d", options={"num_samples": 100}))
    assert np.array_equal(np.random.get_state()[1], before)


@pytest.mark.parametrize("knob", ["iid_noise_scale", "scale_coeff", "corr_noise_scale"])
def test_mnist1d_refuses_scales_that_make_inputs_not_finite(knob: str) -> None:
    np.random.seed(7)
    before = np.random.get_state()[1].copy()
    with pytest.raises(GengapError, match="mnist1d: these options make inputs that are not "
                                          "finite in float32"):
        load(DataSpec(name="mnist1d", options={"num_samples": 100, knob: 1e308}))
    assert np.array_equal(np.random.get_state()[1], before)


def test_mnist1d_rounds_its_examples_down_to_whole_tens_as_documented() -> None:
    """The package makes num_samples // 10 of each class (not refused: a zoo stored with 155
    must still load)."""
    s = load(DataSpec(name="mnist1d", options={"num_samples": 155}))
    assert len(s.x_train) + len(s.x_test) == 150


def _pvr_label(seq: list[int], window: int, aggregation: str, wrap: bool) -> int:
    pointer, values = seq[0], seq[1:]
    if wrap:
        chosen = [values[(pointer + j) % len(values)] for j in range(window)]
    else:
        chosen = values[pointer : pointer + window]
    assert len(chosen) == window
    if aggregation == "mod_sum":
        return sum(chosen) % 10
    if aggregation == "min":
        return min(chosen)
    if aggregation == "max":
        return max(chosen)
    if aggregation == "median":
        return statistics.median_low(chosen)
    counts = Counter(chosen)
    return min(v for v in counts if counts[v] == max(counts.values()))


@pytest.mark.parametrize("aggregation", ["mod_sum", "min", "max", "median", "majority"])
@pytest.mark.parametrize(("window", "wrap"), [(1, False), (4, False), (3, True)])
def test_pvr_vector_labels_recomputed_independently(
    aggregation: str, window: int, wrap: bool
) -> None:
    options = {"window": window, "aggregation": aggregation, "wrap": wrap, "n_train": 200,
               "n_test": 50}
    s = load(DataSpec(name="pvr-vector", options=options, seed=1))
    rows = torch.cat([s.x_train, s.x_test]).tolist()
    labels = torch.cat([s.y_train, s.y_test]).tolist()
    assert [_pvr_label(r, window, aggregation, wrap) for r in rows] == labels
    pointers = {r[0] for r in rows}
    assert max(pointers) <= (9 if wrap else 10 - window)


@pytest.mark.parametrize(("aggregation", "baseline"), [("min", 0.271), ("median", 0.148)])
def test_pvr_majority_baseline_matches_exact_enumeration(aggregation: str, baseline: float) -> None:
    # Window 3: majority-class rates 0.271 (min) and 0.148 (lower median), tasks.md §1.4.
    options = {"window": 3, "aggregation": aggregation, "n_train": 40000, "n_test": 10}
    summary = summarize(load(DataSpec(name="pvr-vector", options=options)))
    assert summary.majority_train_acc == pytest.approx(baseline, abs=0.008)


def _windows(x: torch.Tensor, window: int) -> list[tuple[int, ...]]:
    return [tuple(r[1 + r[0] : 1 + r[0] + window]) for r in x.tolist()]


def test_pvr_holdout_train_has_no_held_out_window_and_shifted_test_only_those() -> None:
    window, holdout = 3, 4
    held = set(itertools.islice(itertools.permutations(range(window)), holdout))
    assert held == {(0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0)}
    options = {"window": window, "holdout": holdout, "n_train": 30000, "n_test": 500,
               "aggregation": "max"}
    s = load(DataSpec(name="pvr-vector", options=options))
    assert not held & set(_windows(s.x_train, window))
    assert set(_windows(s.x_test, window)) == held  # only held-out ones, every one of them
    rows = torch.cat([s.x_train, s.x_test]).tolist()
    labels = torch.cat([s.y_train, s.y_test]).tolist()
    assert [_pvr_label(r, window, "max", False) for r in rows] == labels
    iid = load(DataSpec(name="pvr-vector", options={**options, "shifted_test": False}))
    assert not held & set(_windows(iid.x_test, window))


def test_pvr_holdout_larger_than_the_permutations_is_refused() -> None:
    with pytest.raises(GengapError, match="only 6 permutations"):
        load(DataSpec(name="pvr-vector", options={"window": 3, "holdout": 7}))


def _cells_of(x: torch.Tensor) -> np.ndarray:
    """Each 8x8 tile of each grid, identified as the class of the digits image it equals."""
    bunch = load_digits()
    lookup: dict[bytes, int] = {}
    for image, label in zip(bunch.images / 16.0, bunch.target, strict=True):
        lookup.setdefault(image.astype(np.float32).tobytes(), int(label))
    grids = x.numpy()[:, 0]
    tiles = [grids[:, :8, :8], grids[:, :8, 8:], grids[:, 8:, :8], grids[:, 8:, 8:]]
    return np.array([[lookup[t[i].tobytes()] for t in tiles] for i in range(len(grids))])


def test_pvr_visual_label_is_the_digit_the_top_left_digit_points_to() -> None:
    s = load(DataSpec(name="pvr-visual", normalize=False, options={"n_train": 300, "n_test": 60}))
    assert s.input_shape == (1, 16, 16)
    for x, y in ((s.x_train, s.y_train), (s.x_test, s.y_test)):
        cells = _cells_of(x)
        pointed = [1 if p <= 3 else 2 if p <= 6 else 3 for p in cells[:, 0]]
        assert [c[k] for c, k in zip(cells, pointed, strict=True)] == y.tolist()


def test_pvr_visual_holdout_and_shifted_test() -> None:
    options = {"holdout": True, "n_train": 400, "n_test": 100}
    s = load(DataSpec(name="pvr-visual", normalize=False, options=options))
    held = {1: {1, 2, 3}, 2: {4, 5, 6}, 3: {7, 8, 9, 0}}
    train, test = _cells_of(s.x_train), _cells_of(s.x_test)
    for cell, digits in held.items():
        assert not set(train[:, cell]) & digits
        assert set(test[:, cell]) == digits
    assert set(train[:, 0]) == set(range(10))


def test_pvr_visual_train_and_test_grids_use_disjoint_digit_images() -> None:
    s = load(DataSpec(name="pvr-visual", normalize=False, options={"n_train": 500, "n_test": 200}))

    def tiles(x: torch.Tensor) -> set[bytes]:
        g = x.numpy()[:, 0]
        return {t.tobytes() for q in (g[:, :8, :8], g[:, :8, 8:], g[:, 8:, :8], g[:, 8:, 8:])
                for t in q}

    # digits has a few exact duplicate images; anything beyond those would be a leak.
    assert len(tiles(s.x_train) & tiles(s.x_test)) <= 3


@pytest.mark.parametrize("op", ["add", "sub", "mul", "div", "div_or_sub", "cube_xy2_y"])
def test_modular_labels_and_split(op: str) -> None:
    p = 11
    s = load(DataSpec(name="modular", options={"p": p, "op": op, "train_split": 0.3}))
    rows = torch.cat([s.x_train, s.x_test]).tolist()
    labels = torch.cat([s.y_train, s.y_test]).tolist()
    formulas = {
        "add": lambda x, y: x + y, "sub": lambda x, y: x - y, "mul": lambda x, y: x * y,
        "div": lambda x, y: x * pow(y, p - 2, p),
        "div_or_sub": lambda x, y: x * pow(y, p - 2, p) if y % 2 else x - y,
        "cube_xy2_y": lambda x, y: x**3 + x * y**2 + y,
    }
    assert all(r[1] == p and r[3] == p + 1 for r in rows)
    assert [formulas[op](r[0], r[2]) % p for r in rows] == labels
    pairs = {(r[0], r[2]) for r in rows}
    expected = p * (p - 1) if op == "div" else p * p
    assert len(pairs) == len(rows) == expected  # every equation exactly once
    assert len(s.y_train) == round(0.3 * expected)
    assert s.vocab_size == p + 2 and s.num_classes == p


def test_modular_division_mod_97_has_9312_equations() -> None:
    s = load(DataSpec(name="modular", options={"op": "div"}))
    assert len(s.y_train) + len(s.y_test) == 97 * 96
    with pytest.raises(GengapError, match="prime"):
        load(DataSpec(name="modular", options={"op": "div", "p": 12}))


def test_hidden_manifold_inputs_lie_on_a_latent_dim_subspace() -> None:
    options = {"activation": "linear", "input_dim": 40, "latent_dim": 5, "n_train": 300,
               "n_test": 50}
    s = load(DataSpec(name="hidden-manifold", options=options, normalize=False))
    singular = np.linalg.svd(s.x_train.double().numpy(), compute_uv=False)
    assert singular[4] > 1e-3 * singular[0] and singular[5] < 1e-6 * singular[0]
    signs = load(DataSpec(name="hidden-manifold", normalize=False,
                          options={**options, "activation": "sign"}))
    x = signs.x_train.numpy()
    assert set(np.unique(x)) == {-1.0, 1.0}
    assert abs(x.mean()) < 0.1
    assert summarize(signs).train_counts == (150, 150)


def test_teacher_student_linear_teacher_is_linearly_separable() -> None:
    options = {"teacher_depth": 0, "num_classes": 2, "n_train": 400, "n_test": 100,
               "input_dim": 5}
    s = load(DataSpec(name="teacher-student", options=options, normalize=False))
    x, y = s.x_train.numpy(), s.y_train.numpy()
    assert abs(x.mean()) < 0.1 and abs(x.std() - 1) < 0.1
    assert LogisticRegression(C=1e4, max_iter=5000).fit(x, y).score(x, y) == 1.0
    assert summarize(s).train_counts == (200, 200)
