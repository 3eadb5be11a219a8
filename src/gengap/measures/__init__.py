"""The catalogue of generalization measures.

``compute(MeasureContext(model, init_model, x_train, y_train), names)`` returns one float per
measure. Importing this package registers every measure in :data:`measures`.
"""

# Importing the measure modules registers their measures.
import gengap.measures.agreement  # noqa: F401, E402
import gengap.measures.flatness  # noqa: F401, E402
import gengap.measures.norm_margin  # noqa: F401, E402
import gengap.measures.norms  # noqa: F401, E402
import gengap.measures.optimization  # noqa: F401, E402
import gengap.measures.output  # noqa: F401, E402
import gengap.measures.pacbayes  # noqa: F401, E402
import gengap.measures.representation  # noqa: F401, E402
import gengap.measures.sharpness  # noqa: F401, E402
import gengap.measures.spectral_ht  # noqa: F401, E402
import gengap.measures.vc  # noqa: F401, E402
import gengap.measures.weight_stats  # noqa: F401, E402
from gengap.measures.compute import Profile, available, compute, compute_timed, profile
from gengap.measures.context import MeasureContext
from gengap.measures.layers import fold_batchnorm, weight_matrices
from gengap.measures.registry import (
    COSTS,
    NEEDS,
    Measure,
    NotApplicable,
    measure,
    measures,
    select,
)

__all__ = [
    "COSTS",
    "NEEDS",
    "Measure",
    "MeasureContext",
    "NotApplicable",
    "Profile",
    "available",
    "compute",
    "compute_timed",
    "fold_batchnorm",
    "measure",
    "measures",
    "profile",
    "select",
    "weight_matrices",
]
