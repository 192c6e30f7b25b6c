"""Hot model reload under load (directory and S3 sources), and model directories as users meet them:
``onnxfn manifest``, files the manifest does not list, ``onnxfn serve`` defaults and zero loadable models."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import requests
from onnxfn.runtime import load_models, write_manifest
from onnxfn.runtime._reload import Reloader
from servers import ROOT, onnxfn_serve

ROW = [1.0, 2.0, 3.0, 4.0]


def scale_model(path: Path, factor: int) -> Path:
    """A tensor model whose output is its input times ``factor``, and whose version is ``factor``:
    every answer says, by its numbers alone, which model computed it."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from onnxfn.runtime import ModelMetadata

    graph = helper.make_graph(
        [helper.make_node("Mul", ["input", "factor"], ["output"])],
        "scale",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 4])],
        initializer=[numpy_helper.from_array(np.array([float(factor)], np.float32), "factor")],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="onnxfn-tests"
    )
    model.ir_version = 8
    ModelMetadata(task="tensor", version=factor).write(model)
    tmp = path.with_name(f".{path.name}.tmp")
    onnx.save(model, str(tmp))
    os.replace(tmp, path)  # as a careful deploy does: the new file appears whole
    return path


def publish(directory: Path, factor: int) -> None:
    scale_model(directory / "scale.onnx", factor)
    write_manifest(directory)  # atomic too (os.replace)


def answer_factor(body: dict) -> int:
    """The factor that computed ``body``; asserts the answer is internally consistent."""
    (row,) = body["outputs"]
    factor = row[0] / ROW[0]
    assert row == [x * factor for x in ROW], body
    assert body["version"] == str(int(factor)), body
    return int(factor)


class Load:
    """Threads sending predicts as fast as they can; every answer recorded, every failure kept."""

    def __init__(self, url: str, threads: int = 4) -> None:
        self.url = url
        self.stop = threading.Event()
        self.seen: list[list[int]] = [[] for _ in range(threads)]
        self.errors: list[str] = []
        self.threads = [threading.Thread(target=self.run, args=(i,), daemon=True) for i in range(threads)]

    def run(self, i: int) -> None:
        with requests.Session() as s:
            while not self.stop.is_set():
                try:
                    r = s.post(f"{self.url}/v1/models/scale:predict", json={"instances": [ROW]}, timeout=30)
                    if r.status_code != 200:
                        self.errors.append(f"{r.status_code} {r.text[:200]}")
                        continue
                    self.seen[i].append(answer_factor(r.json()))
                except Exception as exc:  # an error is a test failure, recorded
                    self.errors.append(repr(exc))

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=60)

    @property
    def count(self) -> int:
        return sum(len(s) for s in self.seen)

    def wait_for(self, factor: int, timeout: float = 30.0) -> None:
        """Until every thread's latest answer comes from ``factor``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(s and s[-1] == factor for s in self.seen) and not self.errors:
                return
            time.sleep(0.05)
        raise AssertionError(
            f"never switched to {factor}: last {[s[-1:] for s in self.seen]}, {self.errors[:3]}"
        )

    def answers_for(self, seconds: float) -> set[int]:
        marks = [len(s) for s in self.seen]
        time.sleep(seconds)
        return {f for s, m in zip(self.seen, marks, strict=True) for f in s[m:]}


def server_log(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]


@pytest.mark.slow
def test_swaps_under_load_never_fail_a_request(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    publish(models, 1)
    good = {1}
    log = tmp_path / "server.log"
    with onnxfn_serve(models, "--reload-interval", "0.2", log_file=log) as (url, _):
        with Load(url) as load:
            load.wait_for(1)
            for factor in (2, 3):
                publish(models, factor)
                good.add(factor)
                load.wait_for(factor)
            # A corrupt file that its manifest vouches for: sha256 fine, onnxruntime refuses it.
            (models / "scale.onnx").write_bytes(b"this is not an onnx graph" * 10)
            write_manifest(models)
            # The old model keeps serving over many polls.
            assert load.answers_for(1.5) == {3}
            # A real model whose manifest was not updated: sha256 mismatch, refused.
            scale_model(models / "scale.onnx", 99)
            assert load.answers_for(1.5) == {3}
            for factor in (4, 5):
                publish(models, factor)
                good.add(factor)
                load.wait_for(factor)
            while load.count < 3000:  # thousands of requests in all, across the swaps
                time.sleep(0.2)
            metrics = requests.get(f"{url}/metrics", timeout=10).text
    assert load.errors == []
    assert load.count >= 3000
    for answers in load.seen:
        assert set(answers) <= good  # never the refused 99, never an error
        assert answers == sorted(answers)  # one worker: once the new model answers, the old never again
    assert set().union(*map(set, load.seen)) == good
    # Two bad states were published. A poll may also land between writing the corrupt file and its
    # manifest (a third, sha256-mismatch state): each state is refused and logged once, never per poll.
    logs = server_log(log)
    refused = [x for x in logs if x.get("event") == "model_reload_refused"]
    assert f'onnxfn_model_load_failures_total{{model="scale"}} {len(refused)}.0' in metrics
    reasons = [x["reason"] for x in refused]
    assert 2 <= len(reasons) <= 3 and all(a != b for a, b in itertools.pairwise(reasons))
    corrupt = next(x for x in refused if "onnxruntime cannot load" in x["reason"])
    assert corrupt["serving"] == "3"
    assert "sha256 mismatch" in reasons[-1] and "onnxfn manifest" in reasons[-1]
    reloaded = [x["loaded"] for x in logs if x.get("event") == "models_reloaded"]
    assert reloaded == [{"scale": str(f)} for f in (2, 3, 4, 5)]


def test_in_flight_requests_finish_on_the_old_session(tmp_path):
    publish(tmp_path, 1)
    repo = load_models(tmp_path)
    held = repo.get("scale")  # a request that already resolved its model
    reloader = Reloader(repo, interval=60)
    assert reloader.poll() is False  # nothing changed
    publish(tmp_path, 2)
    assert reloader.poll() is True
    x = {"input": np.array([ROW], np.float32)}
    assert held.run(x)["output"].tolist() == [[1, 2, 3, 4]]  # the old session still answers
    assert repo.get("scale").run(x)["output"].tolist() == [[2, 4, 6, 8]]
    assert repo.get("scale").version == "2" and repo.default == "scale"
    # A model removed from the source is unloaded; one added is loaded.
    scale_model(tmp_path / "other.onnx", 7)
    (tmp_path / "scale.onnx").unlink()
    write_manifest(tmp_path)
    assert reloader.poll() is True
    assert sorted(repo.models) == ["other"] and repo.default == "other"


@pytest.mark.slow
def test_s3_source_reloads_by_etag(moto_server, tmp_path, monkeypatch):
    import boto3

    creds = {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "ONNXFN_S3_ENDPOINT_URL": moto_server,
        "ONNXFN_CACHE_DIR": str(tmp_path / "cache"),
    }
    for k, v in creds.items():
        monkeypatch.setenv(k, v)
    s3 = boto3.client("s3", endpoint_url=moto_server)
    s3.create_bucket(Bucket="reload")
    local = tmp_path / "build"
    local.mkdir()

    def upload(*names: str) -> None:
        for name in names:
            s3.upload_file(str(local / name), "reload", f"prod/{name}")

    publish(local, 1)
    upload("scale.onnx", "manifest.json")
    log = tmp_path / "server.log"
    with onnxfn_serve("s3://reload/prod/", "--reload-interval", "0.3", env=creds, log_file=log) as (url, _):

        def factor_now() -> int:
            r = requests.post(f"{url}/v1/models/scale:predict", json={"instances": [ROW]}, timeout=10)
            assert r.status_code == 200, r.text
            return answer_factor(r.json())

        def wait_for(factor: int) -> None:
            deadline = time.monotonic() + 30
            while factor_now() != factor:
                assert time.monotonic() < deadline, f"never switched to {factor}"
                time.sleep(0.1)

        assert factor_now() == 1
        publish(local, 2)
        upload("scale.onnx", "manifest.json")
        wait_for(2)
        # The model object changes but the manifest in the bucket does not: refused, 2 keeps serving.
        scale_model(local / "scale.onnx", 3)
        upload("scale.onnx")
        time.sleep(1.5)
        assert {factor_now() for _ in range(20)} == {2}
        write_manifest(local)
        upload("manifest.json")
        wait_for(3)
    logs = server_log(log)
    assert [x["reason"][:15] for x in logs if x.get("event") == "model_reload_refused"] == ["sha256 mismatch"]
    assert sum(x.get("event") == "s3_synced" for x in logs) == 3

    # While no server runs, the bucket moves on; the next one starts from the (stale) local cache and the
    # first poll brings it up to date.
    publish(local, 4)
    upload("scale.onnx", "manifest.json")
    with onnxfn_serve("s3://reload/prod/", "--reload-interval", "0.3", env=creds, log_file=log) as (url, _):
        wait_for(4)


# -- model directories ---------------------------------------------------------------------------------


def onnxfn(
    *args: str, env: dict | None = None, cwd: Path = ROOT, timeout: float = 120
) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "onnxfn", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        timeout=timeout,
    )


def test_manifest_command_writes_updates_and_verifies(tmp_path):
    scale_model(tmp_path / "a.onnx", 1)
    scale_model(tmp_path / "b.onnx", 2)
    out = onnxfn("manifest", str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert "added     a" in out.stdout and "added     b" in out.stdout
    entries = json.loads((tmp_path / "manifest.json").read_text())["models"]
    assert sorted(entries) == ["a", "b"]
    assert onnxfn("manifest", str(tmp_path), "--verify").returncode == 0

    scale_model(tmp_path / "b.onnx", 3)  # replaced without updating the manifest
    scale_model(tmp_path / "c.onnx", 4)  # added without listing it
    out = onnxfn("manifest", str(tmp_path), "--verify")
    assert out.returncode == 1
    assert "ok       a" in out.stdout
    assert "PROBLEM  b: sha256 mismatch" in out.stdout and "onnxfn manifest" in out.stdout
    assert "PROBLEM  c.onnx: not listed in manifest.json" in out.stdout
    assert "1 ok, 2 with problems" in out.stdout

    out = onnxfn("manifest", str(tmp_path))
    assert out.returncode == 0
    assert "unchanged a" in out.stdout and "updated   b" in out.stdout and "added     c" in out.stdout
    (tmp_path / "a.onnx").unlink()
    out = onnxfn("manifest", str(tmp_path))
    assert "removed   a (its file is gone)" in out.stdout
    assert onnxfn("manifest", str(tmp_path), "--verify").returncode == 0

    out = onnxfn("manifest", str(tmp_path / "nowhere"))
    assert out.returncode == 2 and "is not a directory" in out.stderr
    out = onnxfn("manifest", str(tmp_path), "zzz")
    assert out.returncode == 2 and "no zzz.onnx" in out.stderr


def test_every_model_loaded_or_skipped_is_logged_with_the_reason(tmp_path, capfd):
    publish(tmp_path, 1)
    scale_model(tmp_path / "stray.onnx", 2)  # not in the manifest
    scale_model(tmp_path / "scale.onnx", 5)  # replaced: sha256 mismatch
    scale_model(tmp_path / "ok.onnx", 3)
    write_manifest(tmp_path, ["ok"])
    code = f"""
from onnxfn.runtime._logging import configure_logging
from onnxfn.runtime.serve import load_repository
from onnxfn.runtime import Settings
configure_logging("INFO")
load_repository(Settings(model_dir={str(tmp_path)!r}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stderr.splitlines()]
    by_event: dict[str, list[dict]] = {}
    for line in lines:
        by_event.setdefault(line["event"], []).append(line)
    (skipped,) = by_event["model_skipped"]
    assert skipped["file"].endswith("stray.onnx") and "onnxfn manifest" in skipped["reason"]
    (refused,) = by_event["model_refused"]
    assert refused["model"] == "scale" and "sha256 mismatch" in refused["reason"]
    (loaded,) = by_event["model_loaded"]
    assert loaded["model"] == "ok" and loaded["version"] == "3" and len(loaded["sha256"]) == 64
    (ready,) = by_event["models_ready"]
    assert ready["loaded"] == ["ok"] and set(ready["not_loaded"]) == {"scale", "stray.onnx"}


def test_serve_exits_with_the_reasons_when_no_model_loads(tmp_path):
    publish(tmp_path, 1)
    scale_model(tmp_path / "scale.onnx", 2)  # sha256 mismatch: the only model is refused
    out = onnxfn("serve", str(tmp_path), "--port", "0", timeout=120)
    assert out.returncode == 2
    assert "no model could be loaded" in out.stderr and "scale: sha256 mismatch" in out.stderr
    assert "--reload-interval" in out.stderr
    out = onnxfn("serve", str(tmp_path), "--port", "0", "--workers", "2", timeout=120)
    assert out.returncode == 2 and "no model could be loaded" in out.stderr


@pytest.mark.slow
def test_serve_defaults_to_model_dir_and_waits_for_models_when_reload_is_on(tmp_path):
    # No model argument: ONNXFN_MODEL_DIR, else ./models (as the docs say).
    (tmp_path / "models").mkdir()
    publish(tmp_path / "models", 1)
    from servers import free_port, wait_ready

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "onnxfn", "serve", "--port", str(port)],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_ready(f"http://127.0.0.1:{port}", proc)
        r = requests.post(f"http://127.0.0.1:{port}/predict", json={"instances": [ROW]}, timeout=10)
        assert answer_factor(r.json()) == 1
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0
    # An empty source with reload on: not ready (503), then ready once a model arrives.
    empty = tmp_path / "later"
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "onnxfn", "serve", "--port", str(port), "--reload-interval", "0.2"],
        cwd=tmp_path,
        env={**os.environ, "ONNXFN_MODEL_DIR": str(empty)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                r = requests.get(f"{url}/v2/health/ready", timeout=2)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.1)
        assert r.status_code == 503
        empty.mkdir()
        publish(empty, 4)
        wait_ready(url, proc, timeout=30)
        r = requests.post(f"{url}/predict", json={"instances": [ROW]}, timeout=10)
        assert answer_factor(r.json()) == 4
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0
