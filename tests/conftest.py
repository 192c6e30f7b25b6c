"""Fixtures shared by the whole suite. Models are built once per session (real data, no TensorFlow)."""

from __future__ import annotations

from pathlib import Path

import pytest
from models import digits_logreg, digits_split


@pytest.fixture(scope="session")
def digits_data():
    """(x_train, x_test, y_train, y_test): sklearn digits, 8x8, values 0-16."""
    return digits_split()


@pytest.fixture(scope="session")
def digits_dir(tmp_path_factory) -> Path:
    """A model directory with ``digits.onnx`` (logistic regression on real digits) and its manifest."""
    from onnxfn.runtime import write_manifest

    root = tmp_path_factory.mktemp("models")
    digits_logreg(root / "digits.onnx")
    write_manifest(root)
    return root


@pytest.fixture(scope="session")
def digits_model(digits_dir) -> Path:
    return digits_dir / "digits.onnx"


@pytest.fixture(scope="session")
def moto_server():
    """moto's real S3 server on 127.0.0.1 (shared by the runtime and deploy S3 tests)."""
    from servers import moto_s3

    with moto_s3() as url:
        yield url
