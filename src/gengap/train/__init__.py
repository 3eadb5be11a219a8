"""Fitting one network: ``fit(run, splits) -> TrainResult``."""

from gengap.train.evaluation import evaluate_model
from gengap.train.fit import TrainResult, fit
from gengap.train.optimizers import make_optimizer

__all__ = ["TrainResult", "evaluate_model", "fit", "make_optimizer"]
