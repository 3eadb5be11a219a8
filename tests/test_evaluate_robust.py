"""The robust sign-error of Dziugaite et al. 2020 on hand-built environments."""

import math

import numpy as np
import pandas as pd
import pytest

from gengap.evaluate import environments, hoeffding_weight, ranking_table, robust_sign_error


def two_by_two_with_seeds() -> pd.DataFrame:
    # cells (a, b), two seeds each: the gap rises with a and b; the measure agrees everywhere
    # except between seeds of cell (1, 0), whose values 3 and 0 straddle cell (0, 0)'s 1 and 2
    cells = {(0, 0): ([0.10, 0.12], [1, 2]), (1, 0): ([0.20, 0.22], [3, 0]),
             (0, 1): ([0.30, 0.32], [5, 6]), (1, 1): ([0.40, 0.42], [7, 8])}
    rows = [{"a": a, "b": b, "seed": s, "gap": gaps[s], "m": float(ms[s])}
            for (a, b), (gaps, ms) in cells.items() for s in range(2)]
    return pd.DataFrame(rows)


def test_sign_error_per_hyperparameter_by_hand():
    frame = two_by_two_with_seeds()
    summary = robust_sign_error(frame, "m", ["a", "b"], filter_noise=False, min_ess=4)
    # Varying a at b=0: of the 4 seed pairs, (1 vs 0) and (2 vs 0) disagree: loss 1/2, in
    # both directions; at b=1 every pair agrees. Varying b: every pair agrees.
    assert summary.loc["a", "environments"] == 4
    assert summary.loc["a", "mean"] == pytest.approx(0.25)
    assert summary.loc["a", "max"] == pytest.approx(0.5)
    assert summary.loc["b", "mean"] == 0 and summary.loc["b", "max"] == 0
    assert summary.loc["all", "environments"] == 8
    assert summary.loc["all", "mean"] == pytest.approx(0.125)
    assert summary.loc["all", "p90"] == pytest.approx(0.5)
    # 4 equally weighted pairs have an effective sample size of 4: 5 keeps none
    empty = robust_sign_error(frame, "m", ["a", "b"], filter_noise=False, min_ess=5)
    assert empty.loc["all", "environments"] == 0 and math.isnan(empty.loc["all", "mean"])


def test_hoeffding_weights_by_hand():
    frame = two_by_two_with_seeds()
    n = 1000

    def weight(delta):  # (max(0, 1 - 2 exp(-2 n (delta/2)^2))^2 - 0.5)_+
        w = max(0.0, 1 - 2 * math.exp(-2 * n * (delta / 2) ** 2)) ** 2
        return max(0.0, w - 0.5)

    assert hoeffding_weight(0.1, n) == pytest.approx(
        max(0.0, 1 - 2 * math.exp(-5)) ** 2)
    # environment a: 0 -> 1 at b = 0; pairs (gap, measure) of cell (0,0) against cell (1,0)
    pairs = [((0.10, 1), (0.20, 3)), ((0.10, 1), (0.22, 0)), ((0.12, 2), (0.20, 3)),
             ((0.12, 2), (0.22, 0))]
    w = [weight(abs(x[0] - y[0])) for x, y in pairs]
    loss = [0.0 if (x[1] - y[1]) * (x[0] - y[0]) > 0 else 1.0 for x, y in pairs]
    expected = sum(wi * li for wi, li in zip(w, loss, strict=True)) / sum(w)
    envs = environments(frame, ["a", "b"], test_size=n)
    from gengap.evaluate.robust import environment_losses

    table = environment_losses(frame, "m", envs, min_ess=1)
    row = table[(table.hyperparameter == "a") & (table["from"] == 0) & (table["to"] == 1)
                & (table.others == "b=0")]
    assert row["loss"].item() == pytest.approx(expected, abs=1e-12)
    ess = sum(w) ** 2 / sum(x * x for x in w)
    assert row["ess"].item() == pytest.approx(ess)
    # with 100 test examples these gap differences are noise: every weight is 0
    noisy = robust_sign_error(frame, "m", ["a", "b"], test_size=100, min_ess=1)
    assert noisy.loc["a", "environments"] == 0


def test_ranking_table_robust_columns():
    frame = two_by_two_with_seeds().assign(good=lambda f: f["gap"])
    table = ranking_table(frame, ["m", "good"], ["a", "b"], metrics=("robust",),
                          filter_noise=False, min_ess=4)
    assert list(table["measure"]) == ["good", "m"]  # lower mean sign error first
    assert table.loc[0, "robust_mean"] == 0 and table.loc[1, "robust_max"] == 0.5
    assert table.loc[1, "robust_envs"] == 8


def test_the_note_says_which_rule_kept_no_environment():
    # at a small min_ess the noise filter, not the sample size, drops every environment
    rng = np.random.default_rng(0)
    frame = pd.DataFrame([{"a": a, "b": b, "seed": s, "gap": 0.1 + 1e-4 * rng.normal(),
                           "m": rng.normal(), "test_size": 100}
                          for a in (1, 2) for b in (1, 2, 3) for s in range(2)])
    noisy = ranking_table(frame, ["m"], ["a", "b"], metrics=("robust",), min_ess=1,
                          replicates="seed")
    assert noisy.attrs["notes"] == ["robust: no environment kept: every pair's gaps differ by "
                                    "less than the test-set noise, so each has no weight "
                                    "(Hoeffding)"]
    # unknown gaps or test sizes: not the noise filter's doing
    for unknown in (frame.assign(gap=math.nan), frame.assign(test_size=math.nan)):
        notes = ranking_table(unknown, ["m"], ["a", "b"], metrics=("robust",), min_ess=1,
                              replicates="seed", test_size="test_size").attrs["notes"]
        assert notes[0].startswith("robust: no environment kept: each needs"), notes
    clear = ranking_table(frame.assign(gap=frame["a"] * 0.3 + frame["b"] * 0.2), ["m"],
                          ["a", "b"], metrics=("robust",), min_ess=50, replicates="seed")
    assert clear.attrs["notes"][0].startswith("robust: no environment kept: each needs an "
                                              "effective sample size of 50")


def test_a_test_size_column_is_read_by_default_and_names_may_be_one_string():
    """Python callers got the paper's 10,000 test examples even where the table said 100,
    and "tau,robust" was read letter by letter."""
    frame = two_by_two_with_seeds()
    assumed = ranking_table(frame, ["m"], ["a", "b"], metrics=("robust",), min_ess=1)
    assert assumed.loc[0, "robust_envs"] == 8  # 10,000 test examples: every gap is signal
    small = frame.assign(test_size=30)  # with 30 every difference is noise
    by_default = ranking_table(small, "m", "a, b", metrics="tau,robust", min_ess=1)
    explicit = ranking_table(small, ["m"], ["a", "b"], metrics=("tau", "robust"), min_ess=1,
                             test_size="test_size")
    pd.testing.assert_frame_equal(by_default, explicit)
    assert by_default.loc[0, "robust_envs"] == 0 and "tau" in by_default.columns
    assert robust_sign_error(small, "m", ["a", "b"], min_ess=1).loc["all", "environments"] == 0


def test_a_partly_empty_test_size_column_takes_the_papers_size_where_empty():
    """Rows of an older zoo without a recorded test size got no weight, silently."""
    frame = two_by_two_with_seeds()
    full = robust_sign_error(frame, "m", ["a", "b"], min_ess=1)
    part = frame.assign(test_size=[10_000.0 if i % 2 else math.nan for i in range(len(frame))])
    pd.testing.assert_frame_equal(robust_sign_error(part, "m", ["a", "b"], min_ess=1), full)


def test_an_infinite_target_filters_noise_alike_alone_and_in_the_ranking():
    """The function ranked the infinity before it chose its environments: rank differences
    of 1 or more passed the noise filter everywhere (36 of 36 kept, where ranking_table,
    choosing them from the values, kept 8)."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame([{"lr": lr, "w": w, "seed": seed, "m": rng.normal(),
                           "test_loss": rng.uniform(0.1, 0.1004)}
                          for lr in (0.1, 0.01, 0.001) for w in (1, 2, 4) for seed in (0, 1)])
    frame.loc[0, "test_loss"] = np.inf
    alone = robust_sign_error(frame, "m", ["lr", "w"], "test_loss", min_ess=0, test_size=10000)
    ranked = ranking_table(frame.assign(test_size=10000), ["m"], ["lr", "w"], target="test_loss",
                           metrics=["robust"], min_ess=0, replicates="seed")
    assert alone.loc["all", "environments"] == ranked.loc[0, "robust_envs"]
    assert alone.loc["all", "environments"] < alone.loc["all", "total"]
    assert alone.loc["all", "mean"] == pytest.approx(ranked.loc[0, "robust_mean"])
