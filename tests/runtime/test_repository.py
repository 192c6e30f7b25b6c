"""Model sources: a file, a directory with/without manifest (sha256 verified), and S3 (moto's real server)."""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest
from models import digits_logreg, first_output
from onnxfn.runtime import NotFound, load_models, write_manifest
from onnxfn.runtime._settings import Settings, default_threads


@pytest.fixture
def runtime_log(caplog):
    """Records of the onnxfn.runtime logger (it does not propagate to root, so caplog needs a hand)."""
    logger = logging.getLogger("onnxfn.runtime")
    logger.addHandler(caplog.handler)
    yield caplog
    logger.removeHandler(caplog.handler)


@pytest.fixture
def two_models(tmp_path, digits_model):
    shutil.copy(digits_model, tmp_path / "a.onnx")
    digits_logreg(tmp_path / "b.onnx", version=3)
    write_manifest(tmp_path)
    return tmp_path


def test_single_file_source(digits_model):
    repo = load_models(digits_model)
    assert list(repo.models) == ["digits"] and repo.default == "digits"
    assert repo.get(None).sha256 is None  # no manifest, no claim of verification


def test_directory_with_manifest_verifies_and_versions(two_models):
    repo = load_models(two_models, default="b")
    assert sorted(repo.models) == ["a", "b"] and repo.default == "b"
    assert repo.get("b").version == "3"
    assert (
        repo.get("a").sha256
        == json.loads((two_models / "manifest.json").read_text())["models"]["a"]["sha256"]
    )
    with pytest.raises(NotFound, match="no version '1'"):
        repo.get("b", "1")
    with pytest.raises(NotFound, match="available models: a, b"):
        repo.get("c")


def test_corrupted_model_is_refused_and_the_others_still_served(two_models, runtime_log):
    data = bytearray((two_models / "a.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (two_models / "a.onnx").write_bytes(bytes(data))
    repo = load_models(two_models)
    assert list(repo.models) == ["b"]
    assert "sha256 mismatch for a.onnx" in repo.errors["a"]
    assert any(
        "model_refused" in r.getMessage() and "sha256 mismatch" in r.getMessage() for r in runtime_log.records
    )
    with pytest.raises(NotFound, match="failed to load: sha256 mismatch"):
        repo.get("a")


def test_manifest_cannot_point_outside_the_directory(tmp_path, digits_model):
    (tmp_path / "manifest.json").write_text(
        json.dumps({"models": {"x": {"file": "../../etc/passwd", "sha256": "0" * 64}}})
    )
    assert "outside the model directory" in load_models(tmp_path).errors["x"]
    with pytest.raises(FileNotFoundError, match=r"neither an \.onnx file nor a directory"):
        load_models(tmp_path / "missing")


def test_directory_without_manifest_serves_and_warns(tmp_path, digits_model, runtime_log):
    shutil.copy(digits_model, tmp_path / "m.onnx")
    repo = load_models(tmp_path)
    assert list(repo.models) == ["m"]
    assert any("no_manifest" in r.getMessage() for r in runtime_log.records)


def test_not_an_onnx_file_is_a_clear_error(tmp_path):
    (tmp_path / "x.onnx").write_bytes(b"not a model")
    assert "onnxruntime cannot load" in load_models(tmp_path).errors["x"]


def test_threads_from_lambda_memory(monkeypatch):
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "3538")
    assert default_threads() == 2
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
    assert default_threads() == 1
    monkeypatch.setenv("ONNXFN_THREADS", "3")
    assert Settings.from_env().threads == 3
    monkeypatch.setenv("ONNXFN_THREADS", "many")
    with pytest.raises(ValueError, match="ONNXFN_THREADS"):
        Settings.from_env()


@pytest.mark.slow
def test_s3_source_downloads_once_and_verifies(moto_server, two_models, tmp_path, monkeypatch):
    import boto3

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("ONNXFN_S3_ENDPOINT_URL", moto_server)
    s3 = boto3.client("s3", endpoint_url=moto_server)
    s3.create_bucket(Bucket="models")
    for name in ("a.onnx", "b.onnx", "manifest.json"):
        s3.upload_file(str(two_models / name), "models", f"prod/{name}")
    cache = tmp_path / "cache"
    repo = load_models("s3://models/prod/", cache_dir=cache)
    assert sorted(repo.models) == ["a", "b"]
    assert repo.get("a").sha256  # verified against the manifest that came with it
    probs = first_output(repo.get("b"), [np.zeros((8, 8, 1), np.float32)])
    assert probs.shape == (1, 10)
    # Second load uses the cache: the bucket can even be gone.
    s3.delete_objects(
        Bucket="models",
        Delete={"Objects": [{"Key": f"prod/{n}"} for n in ("a.onnx", "b.onnx", "manifest.json")]},
    )
    assert sorted(load_models("s3://models/prod/", cache_dir=cache).models) == ["a", "b"]
    with pytest.raises(FileNotFoundError, match="nothing under s3://models/empty"):
        load_models("s3://models/empty/", cache_dir=cache)
