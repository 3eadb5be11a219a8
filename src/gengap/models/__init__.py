"""Architecture families, chosen by name: ``build(ArchSpec, input_shape, num_classes)``."""

from gengap.models import cnn, mlp  # noqa: F401, E402  (registers the families)
from gengap.models.families import build, families, register_family

__all__ = ["build", "families", "register_family"]
