"""Shared test helpers: tiny zoo specs and the path of the shared fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

TINY_ZOO = """
name = "tiny"
seeds = [0]

[data]
name = "digits"
train_fraction = 0.3

[arch]
family = "cnn"
depth = 2
width = [4, 8]

[train]
lr = [0.02, 0.05]
max_epochs = 3
"""


@pytest.fixture(scope="session", autouse=True)
def kernel_cache(tmp_path_factory):
    """The compiled kernels build into the session's own folder, not the user's cache (and
    worker processes the tests start inherit it)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GENGAP_CACHE", str(tmp_path_factory.mktemp("gengap-cache")))
        yield


@pytest.fixture
def tiny_zoo_toml(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_ZOO)
    return path


@pytest.fixture
def one_thread():
    """Tiny problems run faster on one torch thread, and don't fight other processes."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"shared fixtures not found at {SHARED}")
    return SHARED
