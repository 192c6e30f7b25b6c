"""SIGTERM during load: readiness turns 503, the listener closes after the drain delay, every request the
server accepted is answered, and ``onnxfn serve`` exits 0 within its bound."""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
from urllib.parse import urlparse

import pytest
import requests
from models import digit_png
from servers import onnxfn_serve

pytestmark = pytest.mark.slow


class SlowUpload:
    """A predict whose body arrives in two halves: the server has accepted it and is reading it."""

    def __init__(self, url: str, body: bytes) -> None:
        parsed = urlparse(url)
        self.sock = socket.create_connection((parsed.hostname, parsed.port), timeout=30)
        self.body = body
        head = (
            "POST /v1/models/digits:predict HTTP/1.1\r\n"
            f"Host: {parsed.hostname}\r\nContent-Type: application/octet-stream\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode()
        self.sock.sendall(head + body[: len(body) // 2])

    def finish(self) -> tuple[int, dict]:
        self.sock.sendall(self.body[len(self.body) // 2 :])
        data = b""
        while chunk := self.sock.recv(65536):
            data += chunk
        self.sock.close()
        head, _, body = data.partition(b"\r\n\r\n")
        return int(head.split()[1]), json.loads(body)


class Clients:
    """Threads sending predicts on fresh connections until a load balancer would stop routing here."""

    def __init__(self, url: str, image: bytes, threads: int = 3) -> None:
        self.url, self.image = url, image
        self.stop = threading.Event()
        self.ok = 0
        self.failures: list[str] = []
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(threads)]
        for t in self.threads:
            t.start()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                r = requests.post(
                    f"{self.url}/v1/models/digits:predict",
                    data=self.image,
                    headers={"content-type": "application/octet-stream"},
                    timeout=30,
                )
                if r.status_code == 200:
                    self.ok += 1
                else:
                    self.failures.append(f"{r.status_code} {r.text[:200]}")
            except requests.RequestException as exc:
                self.failures.append(repr(exc))

    def join(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=60)


def wait_for_503(url: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = requests.get(f"{url}/v2/health/ready", timeout=5)
        if r.status_code == 503:
            return r.json()
        time.sleep(0.01)
    raise AssertionError("readiness never turned 503")


def test_sigterm_under_load_drains_and_exits_zero(digits_dir, digits_data, tmp_path):
    _, x_test, _, y_test = digits_data
    image = digit_png(x_test[0])
    log = tmp_path / "server.log"
    delay, bound = 1.5, 10
    args = ("--drain-delay", str(delay), "--shutdown-timeout", str(bound))
    with onnxfn_serve(digits_dir, *args, log_file=log) as (url, proc):
        clients = Clients(url, image)
        time.sleep(1.0)  # under load
        uploads = [SlowUpload(url, digit_png(x_test[i])) for i in range(3)]  # accepted, bodies half-sent
        time.sleep(0.2)
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        ready = wait_for_503(url, timeout=delay)
        clients.join()  # the load balancer saw the 503 and stops routing new requests here
        assert ready == {"ready": False, "reason": "shutting down"}
        assert time.monotonic() - sent < delay  # still within the drain delay: still serving
        r = requests.post(
            f"{url}/v1/models/digits:predict", data=image, headers={"content-type": "image/png"}, timeout=10
        )
        assert r.status_code == 200
        # After the delay the listener closes: new connections are refused ...
        deadline = time.monotonic() + delay + 5
        while True:
            try:
                requests.get(f"{url}/v2/health/live", timeout=1)
            except requests.ConnectionError:
                break
            assert time.monotonic() < deadline, "the server still accepts connections after the drain delay"
            time.sleep(0.05)
        # ... but what it accepted before is finished.
        answers = [u.finish() for u in uploads]
        code = proc.wait(timeout=bound + 5)
        elapsed = time.monotonic() - sent
    assert code == 0
    assert elapsed < delay + bound
    assert clients.failures == [] and clients.ok > 0
    for (status, body), label in zip(answers, y_test[:3], strict=True):
        assert status == 200
        assert body["predictions"][0][0]["label"] == str(label) or len(body["predictions"][0]) == 5
    lines = [json.loads(x) for x in log.read_text().splitlines() if x.startswith("{")]
    assert any(x.get("event") == "draining" and x["signal"] == "SIGTERM" for x in lines)
    answered = [x for x in lines if x.get("event") == "request" and x["path"] == "/v1/models/digits:predict"]
    assert all(x["status"] == 200 for x in answered)
    assert len(answered) == clients.ok + 1 + len(uploads)  # every request accepted was answered and logged


def test_sigterm_with_two_workers_exits_zero_without_failing_accepted_requests(
    digits_dir, digits_data, tmp_path
):
    _, x_test, _, _ = digits_data
    image = digit_png(x_test[1])
    log = tmp_path / "server.log"
    with onnxfn_serve(digits_dir, "--workers", "2", "--drain-delay", "2", log_file=log) as (url, proc):
        clients = Clients(url, image)
        time.sleep(1.0)
        uploads = [SlowUpload(url, image) for _ in range(2)]
        time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        wait_for_503(url, timeout=2.5)  # the supervisor forwards SIGTERM within 0.5 s
        clients.join()
        # Once the workers close their listeners, new connections are refused at once, even though the
        # supervisor is still running (the half-sent uploads keep the workers, so it, alive).
        deadline = time.monotonic() + 8
        while True:
            try:
                requests.get(f"{url}/v2/health/live", timeout=2)
            except requests.ConnectTimeout:
                raise AssertionError("a connection queued on a socket nobody accepts from") from None
            except requests.ConnectionError:  # refused (or reset, if it raced the listener closing)
                break
            assert time.monotonic() < deadline, "still accepting after the drain delay"
            time.sleep(0.05)
        assert proc.poll() is None
        answers = [u.finish() for u in uploads]
        assert proc.wait(timeout=20) == 0
    assert clients.failures == [] and clients.ok > 0
    assert [status for status, _ in answers] == [200, 200]
