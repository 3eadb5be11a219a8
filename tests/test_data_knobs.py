"""The randomization knobs of DataSpec: their statistics, which split they touch, validation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from gengap.data import load, summarize
from gengap.errors import GengapError
from gengap.specs import DataSpec

# Basic retrieval: labels are uniform digits, 20,000 of them, in milliseconds.
PVR = {"window": 1, "n_train": 20000, "n_test": 500}


def pvr(**fields: object) -> DataSpec:
    return DataSpec(name="pvr-vector", options=PVR, **fields)


def digits(**fields: object) -> DataSpec:
    return DataSpec(name="digits", normalize=False, **fields)


def test_label_noise_half_on_ten_classes_changes_about_45_percent_of_train_labels() -> None:
    clean, noisy = load(pvr()), load(pvr(label_noise=0.5))
    changed = (clean.y_train != noisy.y_train).double().mean().item()
    assert changed == pytest.approx(0.5 * (1 - 1 / 10), abs=0.015)  # sd 0.0035
    assert torch.equal(clean.x_train, noisy.x_train)
    assert torch.equal(clean.y_test, noisy.y_test) and torch.equal(clean.x_test, noisy.x_test)


def test_label_noise_sets_are_nested_across_p_at_one_seed() -> None:
    clean, low, high = load(pvr()), load(pvr(label_noise=0.2)), load(pvr(label_noise=0.4))
    changed_low, changed_high = clean.y_train != low.y_train, clean.y_train != high.y_train
    assert bool((changed_high | ~changed_low).all())
    assert changed_low.double().mean().item() == pytest.approx(0.2 * 0.9, abs=0.015)


def test_random_labels_are_uniform_and_independent_of_the_true_ones() -> None:
    clean, rand = load(pvr()), load(pvr(random_labels=True))
    assert (clean.y_train != rand.y_train).double().mean().item() == pytest.approx(0.9, abs=0.015)
    counts = np.bincount(rand.y_train.numpy(), minlength=10) / 20000
    assert np.abs(counts - 0.1).max() < 0.01
    assert torch.equal(clean.y_test, rand.y_test)


def test_dilution_adds_alpha_randomly_labelled_copies_per_clean_example() -> None:
    clean, diluted = load(digits(train_size=200)), load(digits(train_size=200, dilution=3))
    assert len(diluted.y_train) == 800
    assert torch.equal(diluted.x_train[:200], clean.x_train)
    assert torch.equal(diluted.y_train[:200], clean.y_train)
    originals = {x.numpy().tobytes() for x in clean.x_train}
    assert all(x.numpy().tobytes() in originals for x in diluted.x_train[200:])
    extra = np.bincount(diluted.y_train[200:].numpy(), minlength=10)
    assert extra.min() > 30 and extra.max() < 90  # uniform: 60 expected per class
    assert torch.equal(clean.y_test, diluted.y_test)


def _columns(x: torch.Tensor) -> np.ndarray:
    """(positions, examples): each pixel position across all examples."""
    return x.reshape(len(x), -1).numpy().T


def test_shuffled_pixels_is_one_permutation_for_every_image_of_both_splits() -> None:
    clean, shuffled = load(digits()), load(digits(shuffled_pixels=True))
    both_clean = np.concatenate([_columns(clean.x_train), _columns(clean.x_test)], axis=1)
    both_shuf = np.concatenate([_columns(shuffled.x_train), _columns(shuffled.x_test)], axis=1)
    # every shuffled position is some original position, the same one in every image
    sources = {c.tobytes(): i for i, c in enumerate(both_clean)}
    perm = [sources[c.tobytes()] for c in both_shuf]
    assert np.array_equal(both_clean[perm], both_shuf)
    assert perm != sorted(perm)
    assert torch.equal(clean.y_train, shuffled.y_train)


def test_shuffled_pixels_moves_whole_rgb_pixels(tmp_path) -> None:
    rng = np.random.default_rng(0)
    x = rng.random((30, 3, 4, 4)).astype(np.float32)
    np.savez(tmp_path / "rgb.npz", x=x, y=np.arange(30) % 3)
    spec = DataSpec(name="npz", options={"file": str(tmp_path / "rgb.npz")}, normalize=False,
                    shuffled_pixels=True, test_fraction=0.2)
    s = load(spec)
    pixels = {tuple(p) for p in x.transpose(0, 2, 3, 1).reshape(-1, 3).tolist()}
    out = s.x_train.numpy().transpose(0, 2, 3, 1).reshape(-1, 3).tolist()
    assert all(tuple(p) in pixels for p in out)


def test_random_pixels_permutes_each_image_on_its_own() -> None:
    clean, rand = load(digits()), load(digits(random_pixels=True))
    a = clean.x_train.reshape(len(clean.x_train), -1)
    b = rand.x_train.reshape(len(rand.x_train), -1)
    assert torch.equal(a.sort(dim=1).values, b.sort(dim=1).values)  # same pixel values
    sources = {c.tobytes() for c in _columns(clean.x_train)}
    matched = sum(c.tobytes() in sources for c in _columns(rand.x_train))
    assert matched < 20  # no common permutation (only constant-zero positions can match)
    assert not torch.equal(clean.x_test, rand.x_test)
    kept = load(digits(random_pixels=True, corrupt_test_inputs=False))
    assert torch.equal(clean.x_test, kept.x_test) and torch.equal(rand.x_train, kept.x_train)


@pytest.mark.parametrize("moments", ["global", "per_feature"])
def test_gaussian_inputs_match_the_training_moments(moments: str) -> None:
    clean = load(DataSpec(name="mnist1d", options={"num_samples": 2000}, normalize=False))
    noise = load(DataSpec(name="mnist1d", options={"num_samples": 2000}, normalize=False,
                          gaussian_inputs=True, gaussian_moments=moments))
    x, g = clean.x_train.double(), noise.x_train.double()
    assert g.shape == x.shape and torch.equal(clean.y_train, noise.y_train)
    if moments == "global":
        assert g.mean().item() == pytest.approx(x.mean().item(), abs=0.02)
        assert g.std().item() == pytest.approx(x.std().item(), rel=0.02)
    else:
        assert torch.allclose(g.mean(0), x.mean(0), atol=0.1)
        assert torch.allclose(g.std(0), x.std(0), rtol=0.1)
        assert (x.std(0).max() / x.std(0).min()).item() > 1.2  # the per-feature choice matters
    # inputs carry no information about the labels: no pixel correlates with them
    corr = np.corrcoef(np.c_[g.numpy(), noise.y_train.numpy()].T)[-1, :-1]
    assert np.abs(corr).max() < 0.1
    assert not torch.equal(clean.x_test, noise.x_test)


def test_gaussian_inputs_are_refused_for_tokens() -> None:
    with pytest.raises(GengapError, match="tokens"):
        load(pvr(gaussian_inputs=True))


def test_train_size_and_fraction_keep_a_stratified_subsample() -> None:
    full = summarize(load(digits()))
    for spec in (digits(train_size=500), digits(train_fraction=500 / full.n_train)):
        s = summarize(load(spec))
        assert abs(s.n_train - 500) <= 1 and s.n_test == full.n_test  # a share rounds down
        share = np.array(s.train_counts) / s.n_train
        assert np.abs(share - np.array(full.train_counts) / full.n_train).max() < 0.005
    with pytest.raises(GengapError, match="only 1347"):
        load(digits(train_size=5000))
    with pytest.raises(GengapError, match="keeps none"):
        load(digits(train_fraction=0.0005))


def test_a_class_of_one_member_leaves_the_others_stratified() -> None:
    from gengap.data.randomize import subsample

    y = np.array([0] * 900 + [1] * 99 + [2])
    for seed in range(3):
        _, kept = subsample(np.arange(1000), y, 50, seed, "test")
        assert np.bincount(kept, minlength=3).tolist() == [45, 5, 0]
    # any integer seeds the data: scikit-learn and numpy's legacy generator see it modulo 2³²
    assert torch.equal(load(digits(seed=-1, train_size=20)).x_train,
                       load(digits(seed=2**32 - 1, train_size=20)).x_train)


def test_class_subset_keeps_and_relabels_in_the_given_order() -> None:
    clean, sub = load(digits()), load(digits(classes=(7, 2, 5)))
    assert sub.num_classes == 3
    for x_all, y_all, x, y in ((clean.x_train, clean.y_train, sub.x_train, sub.y_train),
                               (clean.x_test, clean.y_test, sub.x_test, sub.y_test)):
        keep = (y_all == 7) | (y_all == 2) | (y_all == 5)
        assert torch.equal(x, x_all[keep])
        mapped = torch.tensor([{7: 0, 2: 1, 5: 2}[v] for v in y_all[keep].tolist()])
        assert torch.equal(y, mapped)
    with pytest.raises(GengapError, match="classes 0..9, not 12"):
        load(digits(classes=(1, 12)))


def test_grayscale_uses_luminance_weights(tmp_path) -> None:
    rng = np.random.default_rng(1)
    x = rng.random((20, 3, 2, 2)).astype(np.float32)
    x_test = rng.random((5, 3, 2, 2)).astype(np.float32)
    np.savez(tmp_path / "c.npz", x=x, y=np.arange(20) % 2, x_test=x_test, y_test=np.arange(5) % 2)
    s = load(DataSpec(name="npz", options={"file": str(tmp_path / "c.npz")}, normalize=False,
                      grayscale=True))
    assert s.input_shape == (1, 2, 2)
    expected = 0.299 * x_test[:, 0] + 0.587 * x_test[:, 1] + 0.114 * x_test[:, 2]
    assert np.allclose(s.x_test[:, 0].numpy(), expected, atol=1e-6)
    with pytest.raises(GengapError, match="not images"):
        load(DataSpec(name="teacher-student", grayscale=True,
                      options={"n_train": 10, "n_test": 10}))


@pytest.mark.parametrize("mode", ["global", "per_channel", "per_feature"])
def test_normalization_standardizes_with_training_statistics(mode: str, tmp_path) -> None:
    rng = np.random.default_rng(2)
    x = (rng.random((200, 3, 4, 4)) * np.array([1, 5, 20])[None, :, None, None] + 3)
    np.savez(tmp_path / "n.npz", x=x.astype(np.float32), y=np.arange(200) % 4)
    s = load(DataSpec(name="npz", options={"file": str(tmp_path / "n.npz")}, normalization=mode))
    t = s.x_train.double()
    axes = {"global": (0, 1, 2, 3), "per_channel": (0, 2, 3), "per_feature": (0,)}[mode]
    assert torch.allclose(t.mean(axes), torch.zeros((), dtype=t.dtype), atol=1e-4)
    assert torch.allclose(t.std(axes, correction=0), torch.ones((), dtype=t.dtype), atol=1e-4)
    if mode == "global":
        assert t.mean((0, 2, 3)).std().item() > 0.5  # channels keep their differences


def test_token_inputs_are_never_normalized() -> None:
    on, off = load(pvr(normalize=True)), load(pvr(normalize=False))
    assert on.x_train.dtype == torch.int64 and torch.equal(on.x_train, off.x_train)


def test_shuffled_positions_of_token_sequences_keep_tokens() -> None:
    s = load(pvr(shuffled_pixels=True))
    assert s.x_train.dtype == torch.int64 and s.vocab_size == 10


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"label_noise": 0.1, "random_labels": True}, "not both"),
        ({"train_size": 10, "train_fraction": 0.5}, "not both"),
        ({"shuffled_pixels": True, "gaussian_inputs": True}, "at most one"),
        ({"classes": (1, 1)}, "distinct"),
        ({"classes": (3,)}, "at least two"),
        ({"label_noise": 1.5}, "less than or equal"),
    ],
)
def test_contradictory_or_out_of_range_knobs_are_refused(fields: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        DataSpec(**fields)


def test_knobs_draw_from_their_own_streams() -> None:
    # switching label noise on does not change the pixel shuffle, and vice versa
    a = load(digits(shuffled_pixels=True))
    b = load(digits(shuffled_pixels=True, label_noise=0.3))
    c = load(digits(label_noise=0.3))
    assert torch.equal(a.x_train, b.x_train) and torch.equal(b.y_train, c.y_train)
