"""A Fantastic-style study (Jiang et al. 2020) sized for one small machine: a grid of CNNs on
scikit-learn's digits over five hyperparameters, the measure catalogue on every network, the
full evaluation (Kendall's tau, granulated Ψ, CMI, robust sign error), and the ranking beside
the published one: which groups of measures correlate with the gap, which flip sign."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from gengap.data import load
from gengap.evaluate import ranking_table
from gengap.evaluate.ranking import enough_networks
from gengap.evaluate.robust import least_weighed_difference
from gengap.measures import measures
from gengap.specs import ArchSpec, DataSpec, MeasureOptions, TrainSpec, ZooSpec
from gengap.studies.registry import register_study
from gengap.studies.runner import (
    Clock,
    StudyOptions,
    StudyResult,
    failed_runs,
    finished_frame,
    one_thread,
    pick,
    train_seconds,
    train_zoos,
)
from gengap.zoo import measure_zoo

PUBLISHED = (
    "Jiang et al. 2020, 'Fantastic generalization measures and where to find them' (CIFAR-10 "
    "and SVHN NiN zoos; the direction of each finding is solid, the numbers are recalled and "
    "approximate): size measures (#params, VC dimension) and most spectral-norm products "
    "correlate negatively with the gap (mainly through depth; τ ≈ −0.25 for VC-dim, −0.18 for "
    "#params); path norm is the best-behaved norm and the distance to initialization is "
    "moderately good; sharpness and PAC-Bayes flatness measures are best overall, the "
    "magnitude-aware 1/α′ first (τ ≈ 0.48, Ψ ≈ 0.52); optimization measures (steps to "
    "cross-entropy 0.1, gradient noise) are informative; output measures (cross-entropy, "
    "entropy, 1/γ²) are weak and flip sign across axes."
)

# The published direction of each measure's correlation with the gap (Jiang et al. 2020, as
# summarized in the project's reference notes): +1 positive, -1 negative, 0 weak or flipping.
# Measures the notes do not place are left out (shown as "not stated").
PUBLISHED_SIGN: dict[str, int] = {
    "params": -1, "vc_dim": -1,
    "prod_of_spec": -1, "log_prod_of_spec": -1, "prod_of_spec_over_margin": -1,
    "log_prod_of_spec_over_margin": -1, "spec_orig_main": -1, "log_spec_orig_main": -1,
    "spec_init_main": -1, "log_spec_init_main": -1,
    "path_norm": 1, "path_norm_over_margin": 1, "frobenius_distance": 1,
    "sharpness_orig": 1, "sharpness_init": 1, "sharpness_flatness": 1,
    "sharpness_mag_flatness": 1, "sharpness_mag_orig": 1, "sharpness_mag_init": 1,
    "pacbayes_orig": 1, "pacbayes_init": 1, "pacbayes_flatness": 1,
    "pacbayes_mag_flatness": 1, "pacbayes_mag_orig": 1, "pacbayes_mag_init": 1,
    # α′ and σ′ themselves: a wider flat region goes with a smaller gap.
    "sharpness_alpha": -1, "sharpness_mag_alpha": -1, "pacbayes_sigma": -1,
    "pacbayes_mag_sigma": -1,
    "optim_steps_to_0.1": 1, "grad_noise": 1,
    "cross_entropy": 0, "output_entropy": 0, "inverse_margin": 0, "margin": 0,
}
SIGN_TEXT = {1: "+", -1: "−", 0: "weak / flips"}
# The groups computed at smoke scale (the others search, sample or fit: seconds per network).
SMOKE_GROUPS = ("size", "norm", "output", "optimization")
# Dziugaite et al. keep an environment when its effective sample size is at least 12 (ten
# seeds per configuration). This grid has two or three seeds, so no environment could pass; the
# study keeps environments whose effective sample size reaches its number of seeds, and says so.
PAPER_MIN_ESS = 12.0


def measures_zoos(scale: str) -> list[ZooSpec]:
    """The CNN grid: width, depth, learning rate, weight decay and training-set fraction (plus
    dropout at full scale), three seeds each; smoke keeps two axes of two values, two seeds."""
    axes = pick(
        scale,
        {"arch.width": (8, 24), "train.lr": (0.02, 0.08)},
        {"arch.width": (8, 32), "arch.depth": (2, 3), "train.lr": (0.01, 0.05),
         "train.weight_decay": (0.0, 5e-4), "data.train_fraction": (0.5, 1.0)},
        {"arch.width": (8, 24, 48), "arch.depth": (2, 3), "train.lr": (0.01, 0.05),
         "train.weight_decay": (0.0, 5e-4), "data.train_fraction": (0.5, 1.0),
         "arch.dropout": (0.0, 0.25)},
    )
    data = DataSpec(name="digits", train_size=pick(scale, 300, None, None))  # type: ignore[arg-type]
    train = TrainSpec(optimizer="sgd", momentum=0.9, batch_size=64,
                      max_epochs=int(pick(scale, 40, 200, 300)), target_ce=0.01)  # type: ignore[arg-type]
    return [ZooSpec(name="fantastic", data=data, arch=ArchSpec(family="cnn"), train=train,
                    axes=axes, seeds=pick(scale, (0, 1), (0, 1, 2), (0, 1, 2)))]  # type: ignore[arg-type]


def catalogue(scale: str) -> list[str]:
    """Every registered measure; at smoke scale only the groups of :data:`SMOKE_GROUPS`."""
    return [n for n in measures if scale != "smoke" or measures.get(n).group in SMOKE_GROUPS]


def measure_options(scale: str) -> MeasureOptions:
    """The paper's search settings beyond smoke; fewer draws and probes at smoke scale."""
    if scale == "smoke":
        return MeasureOptions(mc_draws=3, search_depth=6, mc_max_rounds=1, ascent_steps=3)
    return MeasureOptions()


def comparison_table(ranking: pd.DataFrame, networks: int | None = None) -> pd.DataFrame:
    """Each scalar measure's tau and Ψ here beside the published direction, and whether they
    agree (the sign of tau matches a published + or −; |tau| < 0.1 for a published weak one;
    None where there is no published direction, or tau is 0 or NaN against a published sign:
    no direction to agree or flip).
    Vector measures (per-layer weight statistics) are left out. With ``networks`` (the
    finished networks), ``enough`` says whether a measure has a value on
    :func:`enough_networks` of them, and those that do come first (in ``ranking``'s order)."""
    rows = []
    for row in ranking.itertuples():
        name = str(row.measure)
        base = name if name in measures else name.split(".")[0]  # vector: "wstat.l0..."
        if base not in measures or measures.get(base).vector:
            continue  # per-layer statistics columns: many, and no published direction
        published = PUBLISHED_SIGN.get(base)
        tau = float(row.tau)
        if published is None or math.isnan(tau) or (published != 0 and tau == 0):
            agrees = None
        elif published == 0:
            agrees = abs(tau) < 0.1
        else:
            agrees = bool(np.sign(tau) == published)
        rows.append({
            "measure": name,
            "group": measures.get(base).group,
            "tau": tau,
            "psi": float(getattr(row, "psi", math.nan)),
            "n": int(getattr(row, "n", 0)),
            "published": SIGN_TEXT[published] if published is not None else "not stated",
            "agrees": agrees,
        })
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    table["enough"] = True if networks is None else table["n"] >= enough_networks(networks)
    return table.sort_values("enough", ascending=False, kind="stable").reset_index(drop=True)


def group_table(comparison: pd.DataFrame) -> pd.DataFrame:
    """Per group of measures, over those with a value on enough networks (column ``enough``
    of :func:`comparison_table`, ``measures_in_mean`` of them): mean tau, the published
    directions, and how many of the measures with one agree or flip."""
    rows = []
    for group, part in comparison.groupby("group", sort=False):
        counted = part[part["enough"]] if "enough" in part else part
        placed = counted[counted["agrees"].notna()]
        rows.append({
            "group": group,
            "measures": len(part),
            "measures_in_mean": len(counted),
            "mean_tau": float(counted["tau"].mean()),
            "published_directions": ", ".join(sorted(set(placed["published"]))) or "–",
            "agree": int((placed["agrees"] == True).sum()),  # noqa: E712 (object column)
            "flip": int((placed["agrees"] == False).sum()),  # noqa: E712
        })
    return pd.DataFrame(rows).sort_values("mean_tau", ascending=False).reset_index(drop=True)


def comparison_figure(comparison: pd.DataFrame) -> go.Figure:
    """tau of each measure, coloured by whether it agrees with the published direction."""
    kinds = {"agrees": ("agrees with the published direction", "#009E73"),
             "flips": ("flips sign", "#D55E00"),
             "none": ("no published direction, or tau 0", "#999999")}
    ordered = comparison.sort_values("tau")
    kind = ordered["agrees"].map(lambda v: "none" if v is None else ("agrees" if v else "flips"))
    fig = go.Figure()
    for key, (label, colour) in kinds.items():
        part = ordered[kind == key]
        fig.add_trace(go.Bar(x=part["tau"], y=part["measure"], orientation="h",
                             name=label, marker_color=colour,
                             hovertext=part["published"].map(lambda p: f"published: {p}")))
    fig.update_layout(title="Kendall's tau of each measure with the gap, against the "
                      "published direction", xaxis_title="tau", xaxis_range=[-1, 1],
                      height=max(400, 16 * len(comparison)), barmode="overlay")
    return fig


def best_by_metric(ranking: pd.DataFrame) -> list[str]:
    """The five best scalar measures by the mean robust sign error (lowest) and by CMI."""
    out = []
    if "robust_mean" in ranking.columns:
        best = ranking.dropna(subset=["robust_mean"]).sort_values("robust_mean").head(5)
        if len(best):
            out.append("lowest mean robust sign error: " + ", ".join(
                f"{m} ({v:.2f}, worst {w:.2f})" for m, v, w in
                zip(best["measure"], best["robust_mean"], best["robust_max"], strict=True)))
    if "cmi" in ranking.columns:
        best = ranking.dropna(subset=["cmi"]).sort_values("cmi", ascending=False).head(5)
        if len(best):
            out.append("highest CMI (×100): " + ", ".join(
                f"{m} ({v:.2f})" for m, v in zip(best["measure"], best["cmi"], strict=True)))
    return out


def findings(comparison: pd.DataFrame, groups: pd.DataFrame, frame: pd.DataFrame,
             ranking: pd.DataFrame | None = None) -> list[str]:
    done = frame[frame["status"] == "done"]
    out = [f"{len(done)} of {len(frame)} networks finished; gap from {done.gap.min():.3f} to "
           f"{done.gap.max():.3f}"]
    enough = comparison[comparison["enough"]] if "enough" in comparison else comparison
    top = enough.dropna(subset=["tau"]).sort_values("tau", ascending=False).head(5)
    out.append("top scalar measures by tau (of those with a value on at least half the "
               "networks): " + ", ".join(
        f"{m} ({t:+.2f})" for m, t in zip(top["measure"], top["tau"], strict=True)))
    if ranking is not None:
        out += best_by_metric(ranking[ranking["measure"].isin(set(enough["measure"]))])
    for row in groups.itertuples():
        if not row.measures_in_mean:
            out.append(f"group {row.group}: none of its {row.measures} measures has a value on "
                       "enough networks")
            continue
        out.append(f"group {row.group}: mean tau {row.mean_tau:+.2f} (over "
                   f"{row.measures_in_mean} of {row.measures} measures); of these with a "
                   f"published direction ({row.published_directions}), {row.agree} agree and "
                   f"{row.flip} flip")
    return out


def unfiltered_robust(ranking: pd.DataFrame, done: pd.DataFrame, names: list[str],
                      hyperparameters: list[str], test_size: int, min_ess: float
                      ) -> tuple[pd.DataFrame, str]:
    """The robust sign error again with every pair weighted 1, for a zoo whose test set is too
    small for the paper's noise filter to keep any pair; with the note that says so."""
    resolvable = least_weighed_difference(test_size)
    plain = ranking_table(done, names, hyperparameters, metrics=("robust",),
                          min_ess=min_ess, filter_noise=False).set_index("measure")
    columns = [c for c in ranking.columns if c.startswith("robust_")]
    out = ranking.set_index("measure")
    out[columns] = plain[columns]
    note = (f"robust: the paper's noise filter kept no pair: with {test_size} test examples two "
            f"gaps must differ by more than {resolvable:.3f} to weigh, and these differ by at "
            f"most {float(done['gap'].max() - done['gap'].min()):.3f}; the robust columns are "
            f"therefore computed without it (every pair weighs 1), which counts sign errors "
            f"that test-set noise alone can cause")
    return out.reset_index(), note


@register_study("measures", "Jiang et al. 2020: the catalogue ranked on a CNN grid")
def run_measures(options: StudyOptions) -> StudyResult:
    """Train the grid, compute the catalogue, evaluate it, and compare with the paper."""
    clock = Clock()
    zoos = measures_zoos(options.scale)
    stores = train_zoos(zoos, options)
    store = stores["fantastic"]
    with one_thread():
        measure_zoo(store, catalogue(options.scale), device=options.device,
                    workers=options.workers, options=measure_options(options.scale))
    frame = finished_frame(stores)
    done = frame[frame["status"] == "done"]
    names = sorted(store.measure_names())
    min_ess = min(PAPER_MIN_ESS, float(len(zoos[0].seeds)))
    test_size = len(load(zoos[0].data).y_test)
    ranking = ranking_table(done, names, store.zoo.hyperparameters,
                            metrics=("tau", "psi", "cmi", "robust"), grid="largest",
                            replicates="seed", test_size=test_size, min_ess=min_ess)
    notes = [f"robust sign error: environments kept at an effective sample size of at least "
             f"{min_ess:g} (the paper: 12, from ten seeds); this grid has "
             f"{len(zoos[0].seeds)} seed(s) per configuration", *ranking.attrs.get("notes", [])]
    if ranking["robust_envs"].max() == 0:
        ranking, note = unfiltered_robust(ranking, done, names, store.zoo.hyperparameters,
                                          test_size, min_ess)
        # the filtered attempt's "no environment kept" is superseded by this note
        notes = [n for n in notes if not n.startswith("robust: no environment kept")] + [note]
    comparison = comparison_table(ranking, len(done))
    groups = group_table(comparison)
    return StudyResult(
        name="measures", scale=options.scale,
        title="Fantastic-style study: the catalogue on a CNN grid on digits",
        table=comparison, figures=[comparison_figure(comparison)], published=PUBLISHED,
        found=findings(comparison, groups, frame, ranking), seconds=clock.seconds,
        train_seconds=train_seconds(frame), runs=len(frame), folder=options.out,
        notes=[*failed_runs(frame), *notes],
        extra_tables={"groups": groups, "ranking": ranking},
    )
