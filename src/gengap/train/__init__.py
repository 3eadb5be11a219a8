"""Fitting networks: ``fit(run, splits) -> TrainResult`` for one, ``fit_population`` for many
same-shaped ones at once."""

from gengap.train.evaluation import evaluate_model
from gengap.train.fit import fit
from gengap.train.optimizers import make_optimizer, optimizers
from gengap.train.population import (
    fit_population,
    group_runs,
    population_key,
    population_path,
    population_speedup,
)
from gengap.train.tracking import CE_MILESTONES, TrainResult

__all__ = [
    "CE_MILESTONES",
    "TrainResult",
    "evaluate_model",
    "fit",
    "fit_population",
    "group_runs",
    "make_optimizer",
    "optimizers",
    "population_key",
    "population_path",
    "population_speedup",
]
