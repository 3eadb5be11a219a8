"""Heavy-tailed self-regularization (Martin & Mahoney; WeightWatcher's definitions): per-layer
ESDs, the Clauset power-law fit, the Marchenko–Pastur fit and the randomized-ESD distance,
batched over layers and over networks."""

from gengap.measures.spectral.esd import eigenvalues_many, layer_slices
from gengap.measures.spectral.marchenko_pastur import MPFit, fit_mp
from gengap.measures.spectral.powerlaw import PowerLawFit, fit_power_law
from gengap.measures.spectral.table import population_summary, spectral_table, summarize

__all__ = [
    "MPFit",
    "PowerLawFit",
    "eigenvalues_many",
    "fit_mp",
    "fit_power_law",
    "layer_slices",
    "population_summary",
    "spectral_table",
    "summarize",
]
