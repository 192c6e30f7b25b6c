"""Real servers for tests: ``onnxfn serve`` in a subprocess on 127.0.0.1, with clean shutdown."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, proc: subprocess.Popen | None = None, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
            raise RuntimeError(f"server exited with {proc.returncode}:\n{out[-4000:]}")
        try:
            if requests.get(f"{url}/v2/health/ready", timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} not ready after {timeout} s")


@contextlib.contextmanager
def onnxfn_serve(
    model: str | Path, *args: str, env: dict[str, str] | None = None, log_file: Path | None = None
) -> Iterator[tuple[str, subprocess.Popen]]:
    """``onnxfn serve MODEL`` on a free port; yields (base URL, process); SIGTERM on exit.

    Its output goes to ``log_file`` if given, else it is drained by a thread as it comes (a server writes a
    log line per request, and an unread pipe fills at 64 KiB and stalls it): ``proc.stdout.read()`` then
    returns everything the server printed once it has exited."""
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "onnxfn",
        "serve",
        str(model),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        *args,
    ]
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    out = open(log_file, "wb") if log_file is not None else subprocess.PIPE
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=full_env, cwd=ROOT)
    if log_file is None:
        proc.stdout = _Drained(proc.stdout)  # type: ignore[assignment]
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, proc)
        yield url, proc
    finally:
        stop(proc)
        if log_file is not None:
            out.close()


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL after 15 s: a server stopped either way."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class _Drained:
    """A child's output pipe read to the end by a thread; ``read()`` waits for the end and returns it all."""

    def __init__(self, pipe: object) -> None:
        self._pipe = pipe
        self._chunks: list[bytes] = []
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        for chunk in iter(lambda: self._pipe.read1(65536), b""):  # type: ignore[attr-defined]
            self._chunks.append(chunk)
        self._pipe.close()  # type: ignore[attr-defined]

    def read(self) -> bytes:
        self._thread.join(30)
        return b"".join(self._chunks)

    def close(self) -> None:
        """The drain thread closes the pipe at its end."""


@contextlib.contextmanager
def moto_s3() -> Iterator[str]:
    """moto's real S3 server on a free 127.0.0.1 port; yields its endpoint URL."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    try:
        while True:
            try:
                requests.get(url, timeout=1)
                break
            except requests.RequestException:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("moto's S3 server did not start") from None
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)
