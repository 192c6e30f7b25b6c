"""Fixtures for the client tests: real servers on 127.0.0.1 only (``onnxfn serve`` in a subprocess, the
runtime app under uvicorn in a thread, and scripted stdlib servers), and small real models."""

from __future__ import annotations

import hashlib
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from .helpers import API_KEY


# -- models ---------------------------------------------------------------------------------------------
def _write_text_model(path: Path) -> None:
    """Sentiment on a 4-word vocabulary: multi-hot → MatMul → Softmax ("good" positive, "bad" negative)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from onnxfn.runtime import ModelMetadata

    w = np.array([[0, 0], [0, 0], [-3, 3], [3, -3]], dtype=np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["input", "W"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1),
        ],
        "words",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 2])],
        initializer=[numpy_helper.from_array(w, "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    ModelMetadata(
        task="text-classification",
        labels=["negative", "positive"],
        preprocess={"vocab": ["", "[UNK]", "good", "bad"], "output_mode": "multi_hot"},
    ).write(model)
    onnx.save(model, str(path))


def _write_tensor_model(path: Path) -> None:
    """``y = x @ [1, 2, 3]ᵀ`` on float32 [N, 3]: a plain tensor model."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from onnxfn.runtime import ModelMetadata

    w = np.array([[1.0], [2.0], [3.0]], dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"])],
        "dot3",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 1])],
        initializer=[numpy_helper.from_array(w, "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    ModelMetadata(task="tensor").write(model)
    onnx.save(model, str(path))


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory, digits_model) -> Path:
    """digits (image), words (text) and dot3 (tensor), with a manifest; digits is the default."""
    from onnxfn.runtime import write_manifest

    root = tmp_path_factory.mktemp("client_models")
    shutil.copy(digits_model, root / "digits.onnx")
    _write_text_model(root / "words.onnx")
    _write_tensor_model(root / "dot3.onnx")
    write_manifest(root)
    return root


@pytest.fixture(scope="session")
def digit_pngs(digits_data) -> list[bytes]:
    """The 450 held-out digits as PNG files (what users send)."""
    from models import digit_png

    _, x_test, _, _ = digits_data
    return [digit_png(img) for img in x_test]


@pytest.fixture(scope="session")
def local(models_dir):
    from onnxfn.client import Client

    return Client.local(models_dir)


@pytest.fixture(scope="session")
def expected(local, digit_pngs) -> list[Any]:
    """Ground truth for every PNG: the in-process client's predictions (labels and top-k)."""
    return list(local.predict_batch(digit_pngs, top_k=10))


# -- servers --------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def server(models_dir) -> Iterator[str]:
    """``onnxfn serve`` (the real CLI) in a subprocess, keyed with API_KEY."""
    from servers import onnxfn_serve

    digest = hashlib.sha256(API_KEY.encode()).hexdigest()
    with onnxfn_serve(models_dir, "--api-key-hashes", digest, "--log-level", "warning") as (url, _):
        yield url


@pytest.fixture
def client(server):
    from onnxfn.client import Client

    with Client(server, api_key=API_KEY, deadline=30) as c:
        yield c


class AppServer:
    """The runtime app under uvicorn in a thread, counting each request's Idempotency-Key and body size."""

    def __init__(self, source: Path, **settings: Any) -> None:
        import uvicorn
        from onnxfn.runtime import Settings, create_app

        app = create_app(source, settings=Settings.from_env(**settings))
        self.keys: dict[str, int] = {}
        self.bodies: list[int] = []
        self.inflight = self.max_inflight = 0
        self.lock = threading.Lock()

        async def counting(scope: dict, receive: Any, send: Any) -> None:
            if scope["type"] == "http" and scope["method"] == "POST":
                headers = dict(scope["headers"])
                key = headers.get(b"idempotency-key", b"").decode()
                with self.lock:
                    self.keys[key] = self.keys.get(key, 0) + 1
                    self.bodies.append(int(headers.get(b"content-length", b"0")))
                    self.inflight += 1
                    self.max_inflight = max(self.max_inflight, self.inflight)
                try:
                    await app(scope, receive, send)
                finally:
                    with self.lock:
                        self.inflight -= 1
                return
            await app(scope, receive, send)

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(counting, log_level="error", access_log=False, lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline:
                raise TimeoutError("uvicorn did not start")
            time.sleep(0.02)

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


@pytest.fixture
def app_server(models_dir) -> Iterator[Callable[..., AppServer]]:
    """Factory: ``app_server(max_batch=8)`` starts the app with those settings (stopped after the test)."""
    started: list[AppServer] = []

    def start(**settings: Any) -> AppServer:
        s = AppServer(models_dir, **settings)
        started.append(s)
        return s

    yield start
    for s in started:
        s.close()


@dataclass
class Seen:
    """One request a stub server received."""

    at: float
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Stub:
    """A scripted HTTP/1.1 server: ``reply(seen, n)`` → (status, headers, body) for request n (0-based)."""

    reply: Callable[[Seen, int], tuple[int, dict[str, str], bytes]]
    seen: list[Seen] = field(default_factory=list)
    url: str = ""

    def __post_init__(self) -> None:
        stub = self
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                seen = Seen(time.monotonic(), self.command, self.path, headers, body)
                with lock:
                    n = len(stub.seen)
                    stub.seen.append(seen)
                status, headers, payload = stub.reply(seen, n)
                self.send_response(status)
                headers = {"content-type": "application/json", **headers}
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _handle

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def stub() -> Iterator[Callable[..., Stub]]:
    """Factory: ``stub(reply)`` starts a scripted server (stopped after the test)."""
    started: list[Stub] = []

    def start(reply: Callable[[Seen, int], tuple[int, dict[str, str], bytes]]) -> Stub:
        s = Stub(reply)
        started.append(s)
        return s

    yield start
    for s in started:
        s.close()
