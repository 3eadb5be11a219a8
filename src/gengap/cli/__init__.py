"""The ``gengap`` command: a thin face over the Python API."""
