"""Shared test fixtures: where the read-only real data in ``../shared`` lies."""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: ``../shared`` beside the checkout, or ``$COVSEG_SHARED`` (a git worktree elsewhere).
SHARED = Path(os.environ.get("COVSEG_SHARED", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (real CT slices and volumes; read-only, never copied into the repo)."""
    path = SHARED / "data"
    if not path.is_dir():
        pytest.skip(f"shared data not found at {path}")
    return path


@pytest.fixture(scope="session")
def challenger_reference() -> Path:
    """``../shared/reference/challenger`` (challengeR 1.0.5 outputs the ranking must reproduce)."""
    path = SHARED / "reference" / "challenger"
    if not path.is_dir():
        pytest.skip(f"challengeR reference not found at {path}")
    return path
