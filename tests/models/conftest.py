"""Fixtures the model tests share."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream.config import Settings


@pytest.fixture(scope="module")
def data_root() -> Path:
    """The labelled data (../shared/data); the tests that need it skip without it."""
    root = Settings().shared_data
    if not (root / "sentiment").is_dir() or not (root / "stance").is_dir():
        pytest.skip(f"labelled data not found in {root} (set SWINGDIAL_SHARED_DATA)")
    return root
