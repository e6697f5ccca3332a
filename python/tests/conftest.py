"""Fixtures of the Python package's tests: model libraries compiled once per test session
with tcc.compile. ../shared is required: a test that needs it fails with the path it looked
for (tcc_test_support.shared), it is never skipped."""

from pathlib import Path

import numpy as np
import pytest

import tcc
from tcc_test_support import TINY, shared


@pytest.fixture(scope="session")
def libs(tmp_path_factory):
    return tmp_path_factory.mktemp("libs")


@pytest.fixture(scope="session")
def tiny_so(libs) -> Path:
    return tcc.compile(TINY / "model.onnx", libs / "tiny.so")


@pytest.fixture(scope="session")
def minilm_so(libs) -> Path:
    return tcc.compile(shared("models", "minilm-l6", "model.onnx"), libs / "minilm.so")


@pytest.fixture(scope="session")
def tiny_case():
    inputs = dict(np.load(TINY / "inputs.npz"))
    expected = np.load(TINY / "expected.npz")["last_hidden_state"]
    return inputs, expected
