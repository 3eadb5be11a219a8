"""``gengap predict``: learned predictors of generalization (fit, cross-validate, apply) and
monotone combinations of measures chosen on some zoos and scored on others."""

from __future__ import annotations

from collections.abc import Container
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from gengap.cli.console import console, frame_table
from gengap.cli.evaluate_cmds import split_names
from gengap.cli.options import BadOption, Seed, blamed_on, checked
from gengap.cli.outputs import TABLES, output_file
from gengap.errors import GengapError
from gengap.table_file import write_table

if TYPE_CHECKING:
    import pandas as pd

    from gengap.zoo.evaluation import Population

predict_app = typer.Typer(
    help="Learned predictors of test accuracy or the gap: fit, cross-validate, apply.",
    no_args_is_help=True,
)

Sources = Annotated[list[Path], typer.Argument(help="zoo folders and/or .csv/.parquet tables")]
Target = Annotated[str, typer.Option(help="what to predict: test_acc, gap or test_error")]
Folds = Annotated[int, typer.Option(min=2, help="k of k-fold cross-validation")]
ByZoo = Annotated[bool, typer.Option(help="leave one zoo out instead of k-fold")]
Axes = Annotated[
    str | None, typer.Option(help="tables only: comma-separated hyperparameter columns")
]


def _predicted(target: str) -> None:
    from gengap.evaluate.predictor_file import check_target

    check_target(target)


FitTarget = Annotated[str, typer.Option(help="what to predict: test_acc, gap, test_error, or "
                                        "a run's test_loss, train_acc or train_loss",
                                        callback=checked(_predicted))]


def feature_names(ctx: typer.Context, features: str, columns: Container[object]) -> list[str]:
    """The names of --features: feature sets or columns of the sources; a name that is
    neither is refused rather than left as an empty set."""
    from gengap.evaluate.features import FEATURE_SETS

    names = split_names(features) or []
    if not names:
        raise BadOption("--features", f"name feature sets ({', '.join(FEATURE_SETS)}) or "
                        "columns", ctx)
    unknown = [n for n in names if n not in FEATURE_SETS and n not in columns]
    if unknown:
        raise BadOption("--features", f"{unknown[0]!r} is neither a feature set "
                        f"({', '.join(FEATURE_SETS)}) nor a column of the sources", ctx)
    return names


@predict_app.command("cv")
def predict_cv(
    ctx: typer.Context,
    sources: Sources,
    target: Target = "test_acc",
    features: Annotated[
        str, typer.Option(help="feature sets to compare (weights, measures, hyperparameters) "
                          "or column names")
    ] = "weights,measures,hyperparameters",
    folds: Folds = 5,
    by_zoo: ByZoo = False,
    hyperparameters: Axes = None,
    seed: Seed = 0,
    out: Annotated[Path | None, typer.Option(help="also write the table (.csv/.parquet)")] = None,
) -> None:
    """Cross-validate gradient-boosted trees on each feature set: R^2 and Kendall tau of the
    predictions on held-out models."""
    from gengap.evaluate.features import FEATURE_SETS
    from gengap.evaluate.predictors import compare_feature_sets
    from gengap.evaluate.targets import UnknownTarget

    output_file(out, TABLES, inputs=sources)
    population = _population(ctx, sources, hyperparameters)
    names = feature_names(ctx, features, population.frame.columns)
    kinds = [n for n in names if n in FEATURE_SETS]
    if len(kinds) < len(names):  # column names: one custom feature set
        kinds.append(",".join(n for n in names if n not in FEATURE_SETS))
    with blamed_on("--target", ctx, UnknownTarget):
        table = compare_feature_sets(
            population.frame, population.measures, population.hyperparameters, target, kinds,
            folds, "zoo" if by_zoo else None, seed,
        )
    how = "leave one zoo out" if by_zoo else f"{folds}-fold"
    console.print(frame_table(table, title=f"predicting {target} ({how}, held-out models)"))
    if out is not None:
        write_table(table, out)
        console.print(f"wrote {out}")


@predict_app.command("fit")
def predict_fit(
    ctx: typer.Context,
    sources: Sources,
    save: Annotated[Path, typer.Option(help="predictor file to write (.json)")],
    target: FitTarget = "test_acc",
    features: Annotated[
        str, typer.Option(help="weights, measures, hyperparameters, or column names")
    ] = "measures",
    folds: Folds = 5,
    by_zoo: ByZoo = False,
    hyperparameters: Axes = None,
    seed: Seed = 0,
) -> None:
    """Fit a predictor on every model of the sources, report its cross-validated quality,
    and save it as JSON (no pickle) for `gengap predict apply`."""
    from gengap.evaluate.features import FEATURE_SETS, feature_columns
    from gengap.evaluate.predictors import cross_validate, fit_predictor, run_configuration

    # checked before the cross-validation
    output_file(save, (".json",), inputs=sources, option="--save")
    population = _population(ctx, sources, hyperparameters)
    names = feature_names(ctx, features, population.frame.columns)
    if len(names) > 1 and set(names) & set(FEATURE_SETS):  # one predictor, one input
        raise BadOption("--features", f"fit takes one feature set ({', '.join(FEATURE_SETS)}) "
                        f"or column names, not {features!r}", ctx)
    columns = feature_columns(population.frame, ",".join(names), population.measures,
                              population.hyperparameters)
    groups = "zoo" if by_zoo else None
    result = cross_validate(population.frame, columns, target, folds, groups, seed,
                            together=run_configuration(population.hyperparameters))
    summary = result.summary()
    console.print(frame_table(result.folds, title=f"held-out {target} per fold"))
    meta = {
        "features_set": features,
        "zoos": sorted(population.frame["zoo"].unique().tolist()),
        # which runs it learned from, so that apply can tell a held-out score from one that
        # is not (an export of a training zoo has its runs under another zoo name)
        "runs": sorted({str(r) for r in population.frame["run_id"].dropna()}
                       if "run_id" in population.frame.columns else []),
        "cv": {"scheme": "leave-one-zoo-out" if by_zoo else f"{folds}-fold", **summary},
    }
    predictor = fit_predictor(population.frame, columns, target, seed=seed, meta=meta)
    predictor.save(save)
    console.print(
        f"cross-validated R^2 {summary['r2']:.3f} ± {summary['r2_sd']:.3f}, tau "
        f"{summary['tau']:.3f} ± {summary['tau_sd']:.3f} over {summary['folds']} folds"
        f"{_few_folds(summary)}; "
        f"wrote {save} ({len(columns)} features, {len(predictor.trees)} trees, "
        f"{predictor.meta['trained_on']} models)"
    )


@predict_app.command("apply")
def predict_apply(
    ctx: typer.Context,
    predictor_file: Annotated[Path, typer.Argument(help="a file from `gengap predict fit`")],
    sources: Sources,
    out: Annotated[
        Path | None, typer.Option(help="write the predictions (.csv or .parquet)")
    ] = None,
    hyperparameters: Axes = None,
) -> None:
    """Predict the target of new models with a saved predictor; flags models whose features
    were missing or outside the training range, and scores the predictions when the truth
    is known."""
    import numpy as np
    import pandas as pd

    from gengap.evaluate import kendall
    from gengap.evaluate.predictor_file import load_predictor
    from gengap.evaluate.targets import with_target

    output_file(out, TABLES, inputs=[*sources, predictor_file])
    predictor = load_predictor(predictor_file)
    frame = _with_features(_population(ctx, sources, hyperparameters).frame,
                           predictor.encoding.features, sources)
    trust = predictor.trust(frame)
    ids = [c for c in ("zoo", "run_id") if c in frame.columns]
    table = pd.concat([frame[ids], pd.Series(predictor.predict(frame), index=frame.index,
                                             name=f"predicted_{predictor.target}"), trust],
                      axis=1)
    try:
        truth = with_target(frame, predictor.target)[predictor.target]
        table[predictor.target] = truth
    except GengapError:
        truth = None
    console.print(frame_table(table, title=f"{predictor_file.name}: predicted "
                              f"{predictor.target}"))
    cv = predictor.meta.get("cv", {})
    if cv:
        console.print(f"at training time ({cv.get('scheme')}, zoos "
                      f"{', '.join(predictor.meta.get('zoos', []))}): held-out R^2 "
                      f"{_number(cv.get('r2')):.3f}, tau {_number(cv.get('tau')):.3f}")
    flagged = int(((trust["imputed"] > 0) | (trust["out_of_range"] > 0)).sum())
    if flagged:
        console.print(f"{flagged} of {len(table)} models have missing features (imputed) or "
                      f"features outside the training range: trees do not extrapolate, so "
                      f"trust their predictions less")
    if truth is not None and np.isfinite(truth.to_numpy(float)).sum() > 1:
        from sklearn.metrics import r2_score

        known = np.isfinite(truth.to_numpy(float))
        guess = table[f"predicted_{predictor.target}"].to_numpy(float)[known]
        real = truth.to_numpy(float)[known]
        caveat = _training_caveat(predictor.meta, frame[known])
        console.print(f"on these models: R^2 {r2_score(real, guess):.3f}, Kendall tau "
                      f"{kendall(guess, real):.3f}{_no_order(guess, real)}{caveat}")
    if out is not None:
        write_table(table, out)
        console.print(f"wrote {out}")


def _few_folds(summary: dict[str, float]) -> str:
    """Where some folds gave R² or tau no value: how many did (their means read those)."""
    counts = [f"{name} in {summary[f'{name}_folds']}" for name in ("r2", "tau")
              if summary[f"{name}_folds"] < summary["folds"]]
    return f" ({' and '.join(counts)} of them had a value)" if counts else ""


def _no_order(guess: Any, real: Any) -> str:
    """Why tau is NaN where one side (a numpy array) ranks nothing: all its values are
    equal."""
    for values, what in ((guess, "prediction"), (real, "true value")):
        if (values == values[0]).all():
            return f" (every {what} is the same: no order to compare)"
    return ""


def _population(ctx: typer.Context, sources: list[Path], hyperparameters: str | None
                ) -> Population:
    """The sources as one population; hyperparameter names given with zoos only are a bad
    --hyperparameters (a zoo's axes are its spec's)."""
    from gengap.zoo.evaluation import HyperparametersOfZoos, load_population

    with blamed_on("--hyperparameters", ctx, HyperparametersOfZoos):
        return load_population(sources, split_names(hyperparameters))


def _with_features(frame: pd.DataFrame, features: list[str], sources: list[Path]
                   ) -> pd.DataFrame:
    """``frame`` with every feature column, those a source lacks as missing values (imputed,
    and counted in the ``imputed`` column, as where several sources are joined); a source
    that has none of them is refused, naming it (its predictions would be the imputation's
    alone)."""
    for name, rows in frame.groupby("zoo", sort=False):
        if not any(c in rows.columns and rows[c].notna().any() for c in features):
            shown = ", ".join(features[:3]) + (f" and {len(features) - 3} more"
                                               if len(features) > 3 else "")
            source = next((s for s in sources if name in (s.stem, s.name)), name)
            raise GengapError(f"{source}: has none of the predictor's features ({shown}); "
                              "it was fit on other inputs")
    lacking = [c for c in features if c not in frame.columns]
    return frame.assign(**{c: float("nan") for c in lacking}) if lacking else frame


def _training_caveat(meta: dict, scored: pd.DataFrame) -> str:
    """What of ``scored`` (the models a score is computed on) the predictor was trained on:
    their runs when it recorded them, else (an older file) their zoos by name."""
    import pandas as pd

    trained = set(meta.get("runs", []))
    if trained and "run_id" in scored.columns:
        seen = int(scored["run_id"].astype(str).isin(trained).sum())
        return (f" ({seen} of {len(scored)} models were part of its training: not a held-out "
                "score)" if seen else "")
    zoos = set(meta.get("zoos", [])) & set(scored.get("zoo", pd.Series()).unique())
    return (f" (zoos {', '.join(sorted(zoos))} were part of its training: not a held-out "
            "score)" if zoos else "")


@predict_app.command("combine")
def predict_combine(
    ctx: typer.Context,
    sources: Sources,
    target: Annotated[str, typer.Option(help="gap, test_error or test_acc")] = "gap",
    test_zoos: Annotated[
        str | None, typer.Option(help="zoos to score on (default: hold out each in turn)")
    ] = None,
    max_measures: Annotated[
        int | None, typer.Option(min=1, help="use at most this many measures (best |tau| "
                                 "first)")
    ] = None,
    hyperparameters: Axes = None,
    out: Annotated[Path | None, typer.Option(help="also write the table (.csv/.parquet)")] = None,
) -> None:
    """A monotone combination of measures chosen on some zoos and scored on the others,
    next to the best single measure of the training zoos."""
    from gengap.evaluate.combination import transfer_table
    from gengap.evaluate.targets import UnknownTarget

    output_file(out, TABLES, inputs=sources)
    population = _population(ctx, sources, hyperparameters)
    with blamed_on("--target", ctx, UnknownTarget):
        table = transfer_table(population.frame, population.measures,
                               population.hyperparameters, target, "zoo",
                               split_names(test_zoos), max_measures)
    console.print(frame_table(table, title=f"measure combinations against {target}, on "
                              "held-out zoos"))
    if out is not None:
        write_table(table, out)
        console.print(f"wrote {out}")


def _number(value: object) -> float:
    """A recorded score, NaN where the file holds none (null: a NaN when it was saved)."""
    return float(value) if isinstance(value, int | float) else float("nan")
