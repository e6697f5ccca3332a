"""Paths and checks shared by the Python package's tests (the fixtures are in conftest.py)."""

from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"
TINY = REPO / "examples" / "tiny-encoder"


def shared(*parts: str) -> Path:
    """A path under ../shared, or a test failure naming it."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.fail(f"{path} is missing: the tests need the shared models and references "
                    f"checked out beside the repository (../shared)", pytrace=False)
    return path


def close(got: np.ndarray, want: np.ndarray, tol: float = 1e-4) -> None:
    """Each element within tol * max(1, max|want|), the tolerance of the repository's
    end-to-end tests."""
    assert got.shape == want.shape, (got.shape, want.shape)
    scale = max(1.0, float(np.abs(want).max(initial=0.0)))
    worst = float(np.abs(got.astype(np.float64) - want).max(initial=0.0))
    assert worst <= tol * scale, f"max abs difference {worst} > {tol} * {scale}"
