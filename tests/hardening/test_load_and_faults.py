"""Load and faults against a real `onnxfn serve`: 10,000 requests from 16 clients with no errors and no
memory growth; a server killed and restarted mid-batch loses nothing; a corrupted model is refused."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import requests
from models import digit_png, first_output
from onnxfn.client import Client
from onnxfn.runtime import load_models, write_manifest
from servers import ROOT, free_port, onnxfn_serve, wait_ready

pytestmark = pytest.mark.slow


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def test_10000_requests_16_clients_no_errors_no_leak(digits_dir, digits_data, capsys):
    _, x_test, _, _ = digits_data
    bodies = [digit_png(img) for img in x_test[:100]]
    total, clients = 10_000, 16
    per_client = total // clients
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(clients + 1)
    rss: dict[str, int] = {}
    done = [0]

    with onnxfn_serve(digits_dir, "--log-level", "warning", env={"ONNXFN_LOG_LEVEL": "WARNING"}) as (
        url,
        proc,
    ):

        def worker(k: int) -> None:
            mine = []
            with requests.Session() as s:
                barrier.wait()
                for i in range(per_client):
                    body = bodies[(k * per_client + i) % len(bodies)]
                    t0 = time.perf_counter()
                    try:
                        r = s.post(
                            f"{url}/predict",
                            data=body,
                            headers={"content-type": "application/octet-stream"},
                            timeout=30,
                        )
                        ok = r.status_code == 200 and len(r.json()["predictions"][0]) == 5
                    except requests.RequestException as exc:
                        ok, r = False, exc
                    mine.append(time.perf_counter() - t0)
                    with lock:
                        done[0] += 1
                        if not ok:
                            errors.append(str(getattr(r, "status_code", r)))
                        if done[0] == 1000:
                            rss["after_1000"] = rss_kib(proc.pid)
            with lock:
                latencies.extend(mine)

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
        for t in threads:
            t.start()
        barrier.wait()
        started = time.perf_counter()
        for t in threads:
            t.join(timeout=600)
        elapsed = time.perf_counter() - started
        rss["end"] = rss_kib(proc.pid)
        assert all(not t.is_alive() for t in threads)
    lat = np.array(latencies) * 1000
    report = {
        "requests": len(lat),
        "errors": len(errors),
        "req_per_s": round(len(lat) / elapsed, 1),
        "p50_ms": round(float(np.percentile(lat, 50)), 2),
        "p99_ms": round(float(np.percentile(lat, 99)), 2),
        "rss_after_1000_mib": round(rss["after_1000"] / 1024, 1),
        "rss_end_mib": round(rss["end"] / 1024, 1),
    }
    with capsys.disabled():
        print("\nload:", json.dumps(report))
    Path(ROOT / "artifacts").mkdir(exist_ok=True)
    (ROOT / "artifacts" / "load.json").write_text(json.dumps(report))
    assert errors == [] and len(lat) == total
    assert rss["end"] <= 1.1 * rss["after_1000"], report


def _start(model_dir: Path, port: int) -> subprocess.Popen:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "onnxfn",
            "serve",
            str(model_dir),
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={"ONNXFN_LOG_LEVEL": "WARNING", "PATH": "/usr/bin:/bin"},
    )
    wait_ready(f"http://127.0.0.1:{port}", proc)
    return proc


def test_server_killed_and_restarted_mid_batch_loses_nothing(digits_dir, digits_model, digits_data):
    _, x_test, _, _ = digits_data
    images = [digit_png(img) for img in x_test] * 8  # 3,600 items, ~900 requests: seconds of work
    model = load_models(digits_model).get(None)
    expected = [
        max(p, key=lambda q: q["score"])["label"] for p in model.classify(first_output(model, images))
    ]
    port = free_port()
    proc = _start(digits_dir, port)
    state = {"proc": proc, "killed_at": None}

    def chaos() -> None:
        time.sleep(0.3)
        state["proc"].send_signal(signal.SIGKILL)  # no graceful drain: in-flight requests are lost
        state["proc"].wait()
        state["killed_at"] = time.monotonic()
        time.sleep(1.0)
        state["proc"] = _start(digits_dir, port)

    killer = threading.Thread(target=chaos)
    try:
        with Client(f"http://127.0.0.1:{port}", timeout=5, deadline=60, max_retries=10) as client:
            killer.start()
            results = client.predict_batch(images, batch_size=4, max_concurrency=4)
            finished = time.monotonic()
        killer.join()
        assert state["killed_at"] is not None and state["killed_at"] < finished, (
            "the kill must land mid-batch"
        )
        labels = [p.label for p in results]
        assert len(labels) == len(images)
        assert labels == expected  # every item answered once, in order, by the same model
    finally:
        killer.join()
        state["proc"].terminate()
        state["proc"].wait(timeout=15)


def test_corrupted_model_on_disk_is_refused_and_the_rest_served(tmp_path, digits_model):
    shutil.copy(digits_model, tmp_path / "good.onnx")
    shutil.copy(digits_model, tmp_path / "bad.onnx")
    write_manifest(tmp_path)
    data = bytearray((tmp_path / "bad.onnx").read_bytes())
    data[100:140] = b"\0" * 40
    (tmp_path / "bad.onnx").write_bytes(bytes(data))
    with onnxfn_serve(tmp_path) as (url, proc):
        assert requests.get(f"{url}/v2/models/good/ready").status_code == 200
        r = requests.get(f"{url}/v2/models/bad")
        assert r.status_code == 404 and "sha256 mismatch" in r.json()["error"]
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
        logs = proc.stdout.read().decode()
    refused = [json.loads(line) for line in logs.splitlines() if '"model_refused"' in line]
    assert refused and refused[0]["model"] == "bad" and "sha256 mismatch for bad.onnx" in refused[0]["reason"]
