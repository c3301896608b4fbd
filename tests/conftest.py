"""Shared test fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """``../shared/data`` beside the checkout (or $CTSURV_SHARED_DATA)."""
    return Path(os.environ.get("CTSURV_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture
def ct_rate_reports_dir() -> Path:
    """The 800 real CT-RATE reports; tests using it skip when the folder is absent."""
    path = shared_data_dir() / "ct-rate-reports"
    if not (path / "train.csv").exists():
        pytest.skip(f"real reports not available at {path}")
    return path


@pytest.fixture
def repo() -> Path:
    return REPO


@pytest.fixture
def one_torch_thread():
    """torch on one thread for the test (the machine is shared; results must not hang on thread count)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
