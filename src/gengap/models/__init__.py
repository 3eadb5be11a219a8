"""Architecture families, chosen by name: ``build(ArchSpec, input_shape, num_classes)``."""

from gengap.models import cnn, mlp, nin, resnet, transformer, vgg  # noqa: F401, E402 (registers)
from gengap.models.families import build, build_for, families, register_family

__all__ = ["build", "build_for", "families", "register_family"]
