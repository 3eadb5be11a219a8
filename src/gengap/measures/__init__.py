"""The catalogue of generalization measures.

``compute(MeasureContext(model, init_model, x_train, y_train), names)`` returns one float per
measure. Importing this package registers every measure in :data:`measures`.
"""

import gengap.measures.agreement  # noqa: F401, E402  (registers: agreement,
import gengap.measures.flatness  # noqa: F401, E402  flatness, representation and
import gengap.measures.representation  # noqa: F401, E402  heavy-tailed spectral measures)
import gengap.measures.spectral_ht  # noqa: F401, E402
from gengap.measures import (  # noqa: F401, E402  (registers the measures)  # noqa: F401, E402  (Jiang et al.'s catalogue)
    norm_margin,
    norms,
    optimization,
    output,
    pacbayes,
    sharpness,
    vc,
    weight_stats,
)
from gengap.measures.compute import Profile, available, compute, compute_timed, profile
from gengap.measures.context import MeasureContext
from gengap.measures.layers import fold_batchnorm, weight_matrices
from gengap.measures.registry import COSTS, NEEDS, Measure, measure, measures, select

__all__ = [
    "COSTS",
    "NEEDS",
    "Measure",
    "Profile",
    "MeasureContext",
    "compute",
    "available",
    "compute_timed",
    "fold_batchnorm",
    "measure",
    "measures",
    "profile",
    "select",
    "weight_matrices",
]
