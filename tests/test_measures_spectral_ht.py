"""Heavy-tailed spectral measures: the Clauset power-law fit against an independent loop and a
known exponent, ESD pooling, the MP fit, the randomized-ESD distance, the per-layer table and
its model-level measures against numpy, the batched population path, and `gengap spectra`."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.spatial.distance import jensenshannon
from sklearn.neighbors import KernelDensity
from torch import nn
from typer.testing import CliRunner

from gengap.measures import MeasureContext, compute
from gengap.measures.spectral import (
    fit_mp,
    fit_power_law,
    layer_slices,
    population_summary,
    spectral_table,
    summarize,
)
from gengap.measures.spectral.esd import eigenvalues_many
from gengap.measures.spectral.marchenko_pastur import linear_kde, linear_kde_grid
from gengap.measures.spectral.table import jensen_shannon_distance

pytestmark = pytest.mark.usefixtures("one_thread")


HT_MEASURES = [
    "alpha", "alpha_weighted", "log_alpha_norm", "log_norm", "log_spectral_norm",
    "stable_rank", "mp_softrank", "rand_distance",
]


def clauset_loop(x: np.ndarray) -> tuple[float, float, float]:
    """Textbook Clauset et al. (2009) continuous fit, one candidate x_min at a time:
    (alpha, x_min, KS distance)."""
    x = np.sort(x)
    best = (math.inf, math.nan, math.nan)
    for i in range(len(x) - 1):
        tail = x[i:]
        n = len(tail)
        alpha = 1 + n / np.sum(np.log(tail / x[i]))
        if alpha <= 1:
            d = 1.0
        else:
            d = np.max(np.abs(1 - (tail / x[i]) ** (1 - alpha) - np.arange(n) / n))
        if d < best[0]:
            best = (d, alpha, x[i])
    return best[1], best[2], best[0]


def pareto(alpha: float, n: int, seed: int) -> np.ndarray:
    """Samples with density ∝ x^{−alpha} on [1, ∞)."""
    return np.random.default_rng(seed).pareto(alpha - 1, n) + 1


@pytest.mark.parametrize("n", [60, 400])
def test_power_law_fit_matches_an_independent_clauset_loop(n: int) -> None:
    x = pareto(3.0, n, seed=n)
    alpha, xmin, d = clauset_loop(x)
    fit = fit_power_law([torch.tensor(np.sort(x))])
    assert float(fit.alpha[0]) == pytest.approx(alpha, rel=1e-10)
    assert float(fit.xmin[0]) == pytest.approx(xmin, rel=1e-12)
    assert float(fit.D[0]) == pytest.approx(d, rel=1e-8)


def test_power_law_fit_recovers_a_known_exponent() -> None:
    for true_alpha in (2.5, 4.0):
        fit = fit_power_law([torch.tensor(np.sort(pareto(true_alpha, 1500, seed=1)))])
        assert float(fit.alpha[0]) == pytest.approx(true_alpha, abs=0.15)


def test_batched_fit_equals_one_fit_per_esd_of_any_length() -> None:
    esds = [torch.tensor(np.sort(pareto(3.5, n, seed=n))) for n in (30, 75, 120)]
    esds[1][:5] = 1e-9  # below the threshold: dropped
    batched = fit_power_law(esds)
    for i, e in enumerate(esds):
        single = fit_power_law([e])
        assert float(batched.alpha[i]) == pytest.approx(float(single.alpha[0]), rel=1e-12)
        assert float(batched.num_pl_spikes[i]) == float(single.num_pl_spikes[0])
    alpha, _, _ = clauset_loop(esds[1].numpy()[5:])
    assert float(batched.alpha[1]) == pytest.approx(alpha, rel=1e-10)


def test_a_stacked_batch_with_values_below_the_threshold_fits_each_row_alone() -> None:
    rows = torch.tensor(np.sort(np.stack([pareto(3.0, 80, seed=k) for k in range(3)]), axis=1))
    rows[0, :7] = 1e-9  # dropped: that row's tail is shorter than the others'
    rows[2, :1] = 0.0
    stacked = fit_power_law(rows)
    for i in range(3):
        alpha, xmin, d = clauset_loop(rows[i][rows[i] > 1e-5].numpy())
        assert float(stacked.alpha[i]) == pytest.approx(alpha, rel=1e-10)
        assert float(stacked.xmin[i]) == pytest.approx(xmin, rel=1e-12)
        assert float(stacked.D[i]) == pytest.approx(d, rel=1e-8)


def test_conv_esd_pools_the_slices_of_every_kernel_position() -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 5, 3)
    (layer,) = layer_slices(nn.Sequential(conv))
    assert layer.slices.shape == (9, 5, 3) and layer.num_evals == 27
    w = conv.weight.detach().double().numpy()
    expected = np.sort(np.concatenate([
        np.linalg.svd(w[:, :, i, j], compute_uv=False) ** 2 / 2 for i in range(3) for j in range(3)
    ]))
    (evals,) = eigenvalues_many([layer.slices])
    np.testing.assert_allclose(evals.numpy(), expected, rtol=1e-10)


def test_an_embedding_table_is_a_layer_as_weightwatcher_takes_it() -> None:
    torch.manual_seed(0)
    embed = nn.Embedding(60, 20)
    (layer,) = layer_slices(nn.Sequential(embed))
    assert layer.kind == "embedding" and layer.slices.shape == (1, 60, 20)
    (evals,) = eigenvalues_many([layer.slices])
    expected = np.sort(np.linalg.svd(embed.weight.detach().double().numpy(),
                                     compute_uv=False) ** 2)
    np.testing.assert_allclose(evals.numpy(), expected, rtol=1e-10)


def test_linear_kde_equals_sklearn() -> None:
    x = np.random.default_rng(0).gamma(2.0, size=200)
    grid = np.linspace(0, x.max() + 0.5, 300)
    ours = linear_kde(torch.tensor(x)[None], torch.tensor(grid)[None], 0.1)[0].numpy()
    kde = KernelDensity(kernel="linear", bandwidth=0.1).fit(x[:, None])
    np.testing.assert_allclose(ours, np.exp(kde.score_samples(grid[:, None])), atol=1e-9)


def test_mp_fit_of_a_random_matrix_finds_its_bulk() -> None:
    rng = np.random.default_rng(0)
    n, m = 800, 200
    w = rng.standard_normal((n, m))
    evals = torch.tensor(np.sort(np.linalg.svd(w, compute_uv=False) ** 2))
    fit = fit_mp(evals[None], n, m)
    # rescaled to mean 1, an iid matrix's ESD is MP with σ = 1: edge (1 + 1/√Q)² = 2.25
    assert float(fit.sigma_mp[0]) == pytest.approx(1.0, abs=0.05)
    assert float(fit.mp_softrank[0]) == pytest.approx(1.0, abs=0.1)
    assert float(fit.num_spikes[0]) <= 2
    spiked = w.copy()
    spiked[:, :3] *= 6
    evals = torch.tensor(np.sort(np.linalg.svd(spiked, compute_uv=False) ** 2))
    assert float(fit_mp(evals[None], n, m).num_spikes[0]) >= 3


def test_rand_distance_is_the_jensen_shannon_distance() -> None:
    rng = np.random.default_rng(1)
    p, q = np.sort(rng.gamma(2, size=50)), np.sort(rng.gamma(3, size=50))
    ours = jensen_shannon_distance(torch.tensor(p)[None], torch.tensor(q)[None])
    assert float(ours[0]) == pytest.approx(jensenshannon(p, q), rel=1e-10)
    # an all-zero layer's eigenvalues are no distribution: NaN, not a distance of 0 that
    # would pull the model's mean down
    # (its shuffled copy is all zero too)
    zeros = torch.zeros(1, 50, dtype=torch.float64)
    assert math.isnan(float(jensen_shannon_distance(zeros, zeros)[0]))


def test_the_shuffle_is_not_the_stream_the_weights_came_from() -> None:
    """Training seeds torch with the run's seed (0 in most zoos) right before it initializes
    the network: a shuffle drawn from a generator seeded 0 as well sorted a first layer made
    from those very uniforms (rand_distance 0.78 on it, against 0.01-0.02 for seed 1)."""
    table = {}
    for run_seed in (0, 1):
        torch.manual_seed(run_seed)  # as fit does before it builds the network
        first = nn.Linear(64, 128)
        table[run_seed] = spectral_table(nn.Sequential(first, nn.ReLU(), nn.Linear(128, 10)),
                                         mp_fit=False, seed=0)
    for run_seed, rows in table.items():
        # an iid matrix's shuffle changes its ESD little; a sorted one is nearly rank one
        assert rows.loc[0, "rand_distance"] < 0.1, run_seed
        assert rows.loc[0, "max_rand_eval"] < 2 * rows.loc[0, "lambda_max"], run_seed


def test_ww_softrank_reads_one_shuffled_copy_as_weightwatcher() -> None:
    """A layer under 100 eigenvalues pools 5 shuffled copies for max_rand_eval; ww_softrank
    took their largest (biased up: a mean of 1.044 over 30 seeds, against 0.999 for one copy)."""
    torch.manual_seed(3)
    net = nn.Sequential(nn.Linear(20, 30), nn.ReLU(), nn.Linear(30, 4))
    below = 0
    for seed in range(5):
        row = spectral_table(net, mp_fit=False, seed=seed).loc[0]
        pooled = row["max_rand_eval"] / row["lambda_max"]
        assert row["ww_softrank"] <= pooled + 1e-12
        below += row["ww_softrank"] < pooled - 1e-9
    assert below >= 3  # the first copy's largest is rarely the largest of five


def mlp() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(40, 120), nn.ReLU(), nn.Linear(120, 60), nn.ReLU(),
                          nn.Linear(60, 4))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.distributions.StudentT(3.0).sample(p.shape) * 0.1)
    return model


def test_table_and_measures_agree_with_numpy_on_linear_layers() -> None:
    model = mlp()
    table = spectral_table(model)
    assert list(table["num_evals"]) == [40, 60, 4]
    assert list(table["reliable"]) == [False, True, False]
    assert "unreliable" in table["warning"][0] and table["warning"][1] in (
        "", "over-trained (alpha < 2)", "under-trained (alpha > 6)")
    rows = []
    for layer, row in zip([model[0], model[2]], table.itertuples(), strict=False):
        sv = np.linalg.svd(layer.weight.detach().double().numpy(), compute_uv=False)
        lam = sv**2
        assert row.log_norm == pytest.approx(np.log10(lam.sum()))
        assert row.log_spectral_norm == pytest.approx(np.log10(lam.max()))
        assert row.stable_rank == pytest.approx(lam.sum() / lam.max())
        assert row.alpha == pytest.approx(clauset_loop(lam)[0], rel=1e-10)
        assert row.alpha_weighted == pytest.approx(row.alpha * np.log10(lam.max()))
        assert row.log_alpha_norm == pytest.approx(np.log10(np.sum(lam**row.alpha)))
        rows.append(row)
    values = compute(MeasureContext(model, device="cpu"), HT_MEASURES)
    # the 4-eigenvalue head is below WeightWatcher's min_evals (8): left out of the means
    for name in HT_MEASURES:
        expected = np.mean([getattr(r, name) for r in rows])
        assert values[name] == pytest.approx(expected, rel=1e-9), name
    assert summarize(table)["alpha"] == pytest.approx(values["alpha"])


def test_population_summary_equals_one_model_at_a_time() -> None:
    torch.manual_seed(1)
    models = [nn.Sequential(nn.Conv2d(1, 16, 3), nn.ReLU(), nn.Conv2d(16, 16, 3), nn.Flatten(),
                            nn.Linear(16, 10)) for _ in range(3)]
    stacked = [torch.stack([m[i].weight.detach() for m in models]) for i in (0, 2, 4)]
    batch = population_summary(stacked, randomize=False)
    for k, model in enumerate(models):
        single = summarize(spectral_table(model, randomize=False))
        for key in ("alpha", "alpha_weighted", "log_norm", "stable_rank", "mp_softrank"):
            assert batch[key][k] == pytest.approx(single[key], rel=1e-9), key


def state_names(state: dict[str, torch.Tensor]) -> list[str]:
    return [k.removesuffix(".weight") for k, v in state.items()
            if k.endswith("weight") and v.dim() >= 2]


def test_spectra_command_prints_the_table(tmp_path) -> None:
    from safetensors.torch import save_file

    from gengap.cli.app import app

    model = mlp()
    path = tmp_path / "mlp.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    result = CliRunner().invoke(app, ["spectra", str(path), "--no-randomize"])
    assert result.exit_code == 0, result.output
    assert "unreliable" in result.output and "alpha" in result.output
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    first = next(k for k in state if k.endswith("weight"))
    save_file({**state, first: state[first].long()}, str(path))  # integer weights: refused
    refused = CliRunner().invoke(app, ["spectra", str(path), "--no-randomize"])
    assert f"tensor {first!r} is int64, not a float" in str(refused.exception)
    save_file({**state, first: torch.zeros(0, 5)}, str(path))  # no weights: no spectrum
    refused = CliRunner().invoke(app, ["spectra", str(path), "--no-randomize"])
    assert f"tensor {first!r} is empty (shape (0, 5))" in str(refused.exception)
    save_file({**state, first: torch.zeros_like(state[first])}, str(path))  # a zeroed layer
    table = CliRunner().invoke(app, ["spectra", str(path), "--no-randomize"])
    assert table.exit_code == 0, table.output
    # a suffix in capitals is the same kind of file (x.CSV was refused: "write .csv")
    written = CliRunner().invoke(app, ["spectra", str(path), "--no-randomize", "--out",
                                       str(tmp_path / "t.CSV")])
    assert written.exit_code == 0, written.output
    assert pd.read_csv(tmp_path / "t.CSV", dtype={"name": str})["name"].tolist() == state_names(
        state)
    # an HDF5 file was "unreadable weight file (... header too large)"
    import h5py

    with h5py.File(tmp_path / "keras.h5", "w") as f:
        f["dense/kernel:0"] = np.ones((3, 3))
    refused = CliRunner().invoke(app, ["spectra", str(tmp_path / "keras.h5")])
    assert str(refused.exception) == (f"{tmp_path / 'keras.h5'}: an HDF5 (Keras) file; spectra "
                                      "reads .safetensors weights or a zoo run (import a PGDL "
                                      "task's models with `gengap pgdl import`)")
    refused = CliRunner().invoke(app, ["spectra", str(tmp_path / "gone.safetensors")])
    assert str(refused.exception) == f"{tmp_path / 'gone.safetensors'}: no such file"
    # integer tensors, or names that do not end in "weight": what counts as a layer, said
    save_file({"w": torch.ones(4, 4, dtype=torch.int64)}, str(tmp_path / "ints.safetensors"))
    refused = CliRunner().invoke(app, ["spectra", str(tmp_path / "ints.safetensors")])
    assert str(refused.exception).endswith(
        "no layer weights found (in a bare file, a layer's weights are a float tensor of 2 or "
        "more dimensions whose name ends in 'weight')")


def test_an_esd_with_no_mass_has_no_mp_fit_and_leaves_the_others_alone() -> None:
    """An all-zero matrix (its ESD all zeros) crashed the batched fit; now its row is NaN."""
    rng = np.random.default_rng(1)
    w = rng.standard_normal((300, 100))
    evals = torch.tensor(np.sort(np.linalg.svd(w, compute_uv=False) ** 2))
    both = fit_mp(torch.stack([evals, torch.zeros_like(evals)]), 300, 100)
    alone = fit_mp(evals[None], 300, 100)
    for field in ("sigma_mp", "bulk_max", "mp_softrank", "num_spikes"):
        assert float(getattr(both, field)[0]) == float(getattr(alone, field)[0])
        assert math.isnan(float(getattr(both, field)[1]))
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    with torch.no_grad():
        model[0].weight.zero_()
    values = compute(MeasureContext(model, None, torch.randn(8, 64), torch.zeros(8).long()),
                     ["mp_softrank", "alpha"])
    assert all(math.isfinite(v) for v in values.values())  # the mean of the other layer


def test_linear_kde_on_an_even_grid_equals_sklearn() -> None:
    rng = np.random.default_rng(3)
    samples = np.stack([np.sort(rng.gamma(k, size=60)) for k in (0.5, 2.0, 6.0)])
    tops = samples.max(1, keepdims=True) + 0.5
    grid = np.linspace(0, 1, 1000)[None] * tops
    ours = linear_kde_grid(torch.tensor(samples), torch.tensor(grid), 0.1).numpy()
    for row in range(3):
        kde = KernelDensity(kernel="linear", bandwidth=0.1).fit(samples[row][:, None])
        np.testing.assert_allclose(ours[row], np.exp(kde.score_samples(grid[row][:, None])),
                                   atol=1e-9)


def esds(seed: int) -> list[tuple[torch.Tensor, int, int]]:
    """A batch of 6 ESDs for each of three slice shapes (Q = 4, 1, 16; Gaussian and Student-t
    entries)."""
    rng = np.random.default_rng(seed)
    out = []
    for n, m in ((80, 20), (30, 30), (16, 1)):
        batch = []
        for k in range(6):
            w = rng.standard_normal((9, n, m)) if k % 2 else rng.standard_t(3, (9, n, m))
            batch.append(np.sort((np.linalg.svd(w, compute_uv=False) ** 2).ravel()))
        out.append((torch.tensor(np.stack(batch)), n, m))
    return out


def test_batched_mp_fit_equals_one_esd_at_a_time() -> None:
    for evals, n, m in esds(4):
        batched = fit_mp(evals, n, m)
        for row in range(len(evals)):
            alone = fit_mp(evals[row : row + 1], n, m)
            for field in ("sigma_mp", "bulk_max", "mp_softrank", "num_spikes"):
                assert float(getattr(alone, field)[0]) == float(getattr(batched, field)[row])


def scan_residuals(evals: np.ndarray, n: int, m: int, sigmas: np.ndarray) -> np.ndarray:
    """WeightWatcher's MP residual for each σ, one σ at a time, from its definition: mean-1
    eigenvalues (square roots for Q = 1), sklearn's linear KDE on 1,000 points, squared
    errors where the KDE exceeds 0.01, rejected σ at 1000² per point."""
    q = n / m
    scaled = evals * len(evals) / evals.sum()
    fitted = np.sqrt(scaled) if q == 1 else scaled
    grid = np.linspace(0, fitted.max() + 0.5, 1000)
    kde = KernelDensity(kernel="linear", bandwidth=0.1).fit(fitted[:, None])
    density = np.exp(kde.score_samples(grid[:, None]))
    good = density > 0.01
    g, d = grid[good], density[good]
    peak, last = g[np.argmax(d)], g.max()
    out = []
    for s in sigmas:
        if q == 1:
            model = np.sqrt(np.clip(4 - g**2, 0, None)) / (np.pi * s * s)
            out.append(np.sum((model - d) ** 2))
            continue
        b, a = (s * (1 + 1 / np.sqrt(q))) ** 2, (s * (1 - 1 / np.sqrt(q))) ** 2
        if b < peak or b > last or a > peak:
            out.append(1000.0**2 * good.sum())
            continue
        inside = np.clip((b - g) * (g - a), 0, None)
        model = np.sqrt(inside) / (2 * np.pi * s * s * g / q)
        out.append(np.sum((model - d) ** 2))
    return np.array(out)


def test_mp_fit_finds_the_least_residual_of_a_fine_scan() -> None:
    for evals, n, m in esds(5):
        fit = fit_mp(evals, n, m)
        for row in range(len(evals)):
            e = evals[row].numpy()
            q = n / m
            s = np.sqrt(e.max() * len(e) / e.sum() / (1 + 1 / np.sqrt(q)) ** 2)
            sigmas = s * np.arange(0.05, 2.0, 0.001)
            scan = scan_residuals(e, n, m, sigmas)
            ours = scan_residuals(e, n, m, np.array([float(fit.sigma_mp[row])]))[0]
            assert ours <= scan.min() * (1 + 1e-3) + 1e-12
            assert float(fit.sigma_mp[row]) == pytest.approx(sigmas[scan.argmin()], abs=2e-3 * s)


def test_attention_projections_are_layers_in_the_model_and_the_file_view() -> None:
    from gengap.models import build
    from gengap.specs import ArchSpec

    torch.manual_seed(0)
    model = build(ArchSpec(family="transformer", width=8, depth=1, heads=2), (6,), 5,
                  vocab_size=7)
    from_model = spectral_table(model, randomize=False, mp_fit=False)
    from_file = spectral_table(dict(model.state_dict()), randomize=False, mp_fit=False)
    # the same layers in the same order, named as in the state dict (the model view left
    # out self_attn.in_proj_weight: nn.MultiheadAttention holds it as a bare parameter)
    assert list(from_model["name"]) == list(from_file["name"])
    projection = from_model[from_model["name"].str.endswith("self_attn.in_proj_weight")]
    assert list(projection[["N", "M"]].iloc[0]) == [24, 8]
    weight = model.encoder.layers[0].self_attn.in_proj_weight.detach().double().numpy()
    expected = np.linalg.svd(weight, compute_uv=False).max() ** 2
    assert projection["lambda_max"].iloc[0] == pytest.approx(expected, rel=1e-10)
    np.testing.assert_allclose(from_model["alpha"], from_file["alpha"], rtol=1e-12)


def test_an_esd_of_equal_values_has_no_power_law_and_stays_out_of_the_means() -> None:
    # α = 1 + n/Σ ln(x/x_min) is inf when the tail's values are equal (an identity layer, a
    # Dirac initialization): it was reported as α = inf and made the model's mean inf
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(60, 60), nn.ReLU(), nn.Linear(60, 80))
    with torch.no_grad():
        model[0].weight.copy_(torch.eye(60))
    table = spectral_table(model, randomize=False, mp_fit=False)
    assert table["alpha"].isna().tolist() == [True, False]
    assert table["D"].isna().tolist() == [True, False]
    assert table["warning"].iloc[0] == "power-law fit failed"
    assert summarize(table)["alpha"] == pytest.approx(float(table["alpha"].iloc[1]), rel=1e-12)
    # the batched path leaves it out of the mean too
    stacked = [torch.stack([m.weight.detach() for m in (model[0], model[0])]),
               torch.stack([model[2].weight.detach()] * 2)]
    population = population_summary(stacked, randomize=False, mp_fit=False)
    np.testing.assert_allclose(population["alpha"], [table["alpha"].iloc[1]] * 2, rtol=1e-10)


def test_heavy_tailed_measures_say_why_they_have_no_value() -> None:
    from gengap.measures import MeasureContext, compute

    torch.manual_seed(0)
    small = nn.Sequential(nn.Linear(3, 6), nn.ReLU(), nn.Linear(6, 2))  # 3 and 2 eigenvalues
    ctx = MeasureContext(small, input_shape=(3,), device="cpu")
    values = compute(ctx, ["alpha", "stable_rank"])
    assert all(math.isnan(v) for v in values.values())
    assert ctx.no_value == dict.fromkeys(values, "no layer has 8 eigenvalues or more, and "
                                         "WeightWatcher's summary leaves smaller layers out")
    flat = nn.Sequential(nn.Linear(60, 60))  # the one layer's power law cannot be fitted
    with torch.no_grad():
        flat[0].weight.copy_(torch.eye(60))
    ctx = MeasureContext(flat, input_shape=(60,), device="cpu")
    assert math.isnan(compute(ctx, ["alpha"])["alpha"])
    assert ctx.no_value == {"alpha": "alpha has no value on any layer with 8 eigenvalues or "
                                     "more (a failed fit, or a zero spectrum)"}
