"""Zoo specs that ship with gengap (the demo's)."""

from __future__ import annotations

from importlib.resources import files

from gengap.specs import ZooSpec
from gengap.zoo.spec_file import parse_zoo_spec


def builtin_spec(name: str) -> ZooSpec:
    """A shipped zoo spec by name (``demo``)."""
    import tomllib

    text = files(__name__).joinpath(f"{name}.toml").read_text()
    return parse_zoo_spec(tomllib.loads(text), source=f"builtin:{name}")
