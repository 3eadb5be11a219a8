"""Every data set as tensors, chosen by name: ``load(DataSpec) -> Splits``.

Sources register themselves in :data:`sources`; importing this package imports them all.
"""

from gengap.data import digits  # noqa: F401, E402  (registers the embedded sources)
from gengap.data.sources import Source, register_source, sources
from gengap.data.splits import Splits, load

__all__ = ["Source", "Splits", "load", "register_source", "sources"]
