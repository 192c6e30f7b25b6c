"""In-process transport: the onnxfn HTTP routes answered by ``onnxfn.runtime`` without a server.

For edge devices and tests: models load with ``onnxfn.runtime.load_models`` and requests run through the
runtime's own request parsing (``parse_json``, V2 ``parse_request``), preprocessing (``Model.prepare``),
inference (``Model.run``) and ranking (``Model.classify``) — the same code the server runs, not a copy.
Needs ``onnxruntime``, ``numpy`` and Pillow (``pip install onnxfn[serve]``), not FastAPI.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from pathlib import Path
from typing import Any

from . import Request, Response

try:
    from onnxfn.runtime import APIError, NotFound, UnsupportedMediaType, load_models
    from onnxfn.runtime._settings import Settings
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        f"Client.local needs the runtime's dependencies ({exc.name} is missing): pip install 'onnxfn[serve]'"
    ) from exc

_PREDICT = re.compile(r"^/v1/models/(?P<name>[^/]+):predict$")
_MODEL = re.compile(r"^/v2/models/(?P<name>[^/]+)(?:/versions/(?P<version>[^/]+))?(?P<rest>/ready|/infer)?$")


class LocalTransport:
    """Serves the models in ``source`` (an ``.onnx`` file or a model directory) in this process."""

    def __init__(
        self,
        source: str | Path,
        *,
        default: str | None = None,
        threads: int | None = None,
        max_batch: int = 1 << 20,
    ) -> None:
        settings = Settings.from_env()
        self.repository = load_models(
            source,
            threads=threads or settings.threads,
            max_image_pixels=settings.max_image_pixels,
            default=default,
        )
        self.url = f"local:{source}"
        self.max_batch = max_batch
        self._lock = threading.Lock()

    def url_for(self, request: Request) -> str:
        return f"{self.url}{request.path}"

    def ensure_pool(self, size: int) -> None:
        """Nothing to pool: onnxruntime sessions are thread-safe."""

    def close(self) -> None:
        """Models are freed with the transport."""

    def send(self, request: Request, timeout: float | None) -> Response:
        request_id = uuid.uuid4().hex
        headers = {"x-request-id": request_id}
        key = request.headers.get("idempotency-key")
        if key:
            headers["idempotency-key"] = key
        try:
            status, body, extra = self._route(request)
        except APIError as exc:
            status, extra = exc.status, {k.lower(): v for k, v in exc.headers.items()}
            body = json.dumps({"error": exc.message, "request_id": request_id}).encode()
        headers.setdefault("content-type", "application/json")
        headers.update(extra)
        return Response(status, headers, body)

    # -- routes: the same as runtime/_app.py ----------------------------------------------------------
    def _route(self, request: Request) -> tuple[int, bytes, dict[str, str]]:
        method, path = request.method.upper(), request.path
        repo = self.repository
        if method == "GET":
            if path == "/v2/health/live":
                return _json({"live": True})
            if path == "/v2/health/ready":
                ready = len(repo) > 0
                return _json({"ready": ready}, 200 if ready else 503)
            if path == "/v2":
                from onnxfn import __version__

                return _json({"name": "onnxfn", "version": __version__, "extensions": ["binary_tensor_data"]})
            if path == "/v1/models":
                models = [
                    {"name": m.name, "version": m.version, "task": m.task, "labels": m.labels}
                    for m in repo.models.values()
                ]
                return _json({"default": repo.default, "models": models})
            match = _MODEL.match(path)
            if match and match["rest"] != "/infer":
                model = repo.get(match["name"], match["version"])
                if match["rest"] == "/ready":
                    return _json({"name": model.name, "ready": True})
                return _json(model.describe())
        elif method == "POST":
            if path == "/predict":
                return self._predict(request, None)
            match = _PREDICT.match(path)
            if match:
                return self._predict(request, match["name"])
            match = _MODEL.match(path)
            if match and match["rest"] == "/infer":
                return self._infer(request, match["name"], match["version"])
        if _MODEL.match(path) or path in ("/predict", "/v1/models", "/v2") or _PREDICT.match(path):
            raise _MethodNotAllowed(f"method {method} is not allowed on {path}")
        raise NotFound(f"no route {method} {path}: see /docs for the API")

    def _predict(self, request: Request, name: str | None) -> tuple[int, bytes, dict[str, str]]:
        from onnxfn.runtime._predict import media_type, parse_body, parse_top_k, predict_payload
        from onnxfn.runtime.preprocess import check_batch

        model = self.repository.get(name)
        content_type = media_type(request.headers.get("content-type", ""))
        if content_type.startswith("multipart/form-data"):
            raise UnsupportedMediaType(
                "multipart bodies are not supported in local mode: send JSON instances"
            )
        instances, top_k = parse_body(content_type, request.body or b"")
        check_batch(len(instances), self.max_batch)
        top_k = parse_top_k((request.params or {}).get("top_k"), top_k)
        return _json(predict_payload(model, instances, top_k))

    def _infer(self, request: Request, name: str, version: str | None) -> tuple[int, bytes, dict[str, str]]:
        from onnxfn.runtime._v2 import HEADER, encode_response, parse_request

        model = self.repository.get(name, version)
        parsed = parse_request(request.body or b"", request.headers.get(HEADER), model, self.max_batch)
        results = model.run(parsed.inputs, parsed.outputs)
        content, headers = encode_response(model, results, parsed)
        return 200, content, headers


class _MethodNotAllowed(APIError):
    status = 405


def _json(payload: Any, status: int = 200) -> tuple[int, bytes, dict[str, str]]:
    return status, json.dumps(payload, separators=(",", ":")).encode(), {"content-type": "application/json"}
