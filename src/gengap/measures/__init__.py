"""The catalogue of generalization measures.

``compute(MeasureContext(model, init_model, x_train, y_train), names)`` returns one float per
measure. Importing this package registers every measure in :data:`measures`.
"""

from gengap.measures import norms, output  # noqa: F401, E402  (registers the measures)
from gengap.measures.compute import compute, compute_timed
from gengap.measures.context import MeasureContext
from gengap.measures.layers import fold_batchnorm, weight_matrices
from gengap.measures.registry import COSTS, NEEDS, Measure, measure, measures, select

__all__ = [
    "COSTS",
    "NEEDS",
    "Measure",
    "MeasureContext",
    "compute",
    "compute_timed",
    "fold_batchnorm",
    "measure",
    "measures",
    "select",
    "weight_matrices",
]
