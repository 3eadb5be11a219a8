"""Zoos: expanding specs into runs, training them through an executor, and the store."""

from gengap.zoo.evaluation import evaluate_table, evaluate_zoo
from gengap.zoo.executors import executors
from gengap.zoo.export import Zoo
from gengap.zoo.measure import load_model, measure_zoo
from gengap.zoo.run import train_zoo
from gengap.zoo.spec_file import load_zoo_spec, parse_zoo_spec
from gengap.zoo.store import Store

__all__ = [
    "Store",
    "Zoo",
    "evaluate_table",
    "evaluate_zoo",
    "executors",
    "load_model",
    "load_zoo_spec",
    "measure_zoo",
    "parse_zoo_spec",
    "train_zoo",
]
