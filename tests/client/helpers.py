"""Constants and servers the client tests import (``from .helpers import ...``; conftest.py holds the
fixtures). Servers bind 127.0.0.1 only and are stopped by the code that starts them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from servers import ROOT, free_port, wait_ready

API_KEY = "onnxfn_test_key_0123456789"

OK_PREDICTION = json.dumps(
    {"model": "digits", "version": "1", "predictions": [[{"label": "7", "index": 7, "score": 0.9}]]}
).encode()

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def same(result: Iterable[Any], expected: list[Any]) -> None:
    """Every item a Prediction with the expected label and score, in order."""
    import pytest
    from onnxfn.client import Prediction

    result = list(result)
    assert len(result) == len(expected)
    for got, want in zip(result, expected, strict=True):
        assert isinstance(got, Prediction), got
        assert got.label == want.label
        assert got.score == pytest.approx(want.score, rel=1e-5)


def call(kind: str, url: str, client: dict[str, Any], method: str, *args: Any, **kwargs: Any) -> Any:
    """``Client(url, **client).<method>(*args, **kwargs)`` (kind "sync") or the same on ``AsyncClient``
    ("async"), in a fresh client closed afterwards."""
    from onnxfn.client import AsyncClient, Client

    if kind == "sync":
        with Client(url, **client) as c:
            return getattr(c, method)(*args, **kwargs)

    async def main() -> Any:
        async with AsyncClient(url, **client) as c:
            return await getattr(c, method)(*args, **kwargs)

    return asyncio.run(main())


def predict_batch(kind: str, url: str, items: Iterable[Any], client: dict[str, Any], **kwargs: Any) -> Any:
    """``predict_batch`` with ``Client(url, **client)`` (kind "sync") or ``AsyncClient`` ("async")."""
    return call(kind, url, client, "predict_batch", items, **kwargs)


@contextlib.contextmanager
def silent_server() -> Iterator[tuple[str, list[socket.socket]]]:
    """Accepts connections, reads nothing back, never answers: (base URL, accepted connections)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    listener.settimeout(0.1)
    conns: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            conns.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", conns
    finally:
        stop.set()
        thread.join(2)
        for conn in conns:
            conn.close()
        listener.close()


class RestartableServe:
    """``onnxfn serve MODELS`` on a fixed port that a test can stop (SIGKILL: in-flight requests are
    lost) and start again on the same port, as tests/hardening/test_load_and_faults.py does."""

    def __init__(self, models: Path) -> None:
        self.models = models
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "onnxfn", "serve", str(self.models)),
                *("--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=ROOT,
        )
        wait_ready(self.url, self.proc)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(15)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
