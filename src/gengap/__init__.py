"""gengap: measure, predict and stress-test how well deep networks generalize.

The pipeline runs one way: specs -> data / models -> train -> zoo store -> measures -> evaluate.
"""

from gengap.errors import GengapError

__version__ = "0.1.0"
__all__ = ["GengapError", "__version__"]
