"""In-process transport: the onnxfn API answered by ``onnxfn.runtime``'s data plane, without a server.

For edge devices and tests. A request is matched against the runtime's one route table
(``onnxfn.runtime._routes``) and handed to the same ``DataPlane`` the HTTP app uses: the same parsing,
preprocessing, inference and encoding, not a copy. Needs onnxruntime, numpy and Pillow
(``pip install 'onnxfn[serve]'``), not an HTTP server.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from . import Request, Response

_EXTRA = "pip install 'onnxfn[serve]'"


def _runtime() -> Any:
    """The runtime pieces, or an ImportError that says which extra to install."""
    try:
        import onnxruntime  # noqa: F401  (the first thing a partial install lacks)
        from onnxfn.runtime import APIError, NotFound, Settings, load_models
        from onnxfn.runtime._asgi import allowed
        from onnxfn.runtime._dataplane import Call, DataPlane
        from onnxfn.runtime._errors import MethodNotAllowed
        from onnxfn.runtime._routes import match
    except ImportError as exc:
        raise ImportError(
            f"Client.local runs models in this process and needs the runtime's dependencies "
            f"({exc.name or exc} is missing): {_EXTRA}"
        ) from None
    return SimpleNamespace(
        APIError=APIError,
        NotFound=NotFound,
        MethodNotAllowed=MethodNotAllowed,
        allowed=allowed,
        Settings=Settings,
        load_models=load_models,
        Call=Call,
        DataPlane=DataPlane,
        match=match,
    )


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
        rt = _runtime()
        settings = rt.Settings.from_env(max_batch=max_batch, offload=False)
        if threads:
            settings.threads = threads
        repository = rt.load_models(
            source, threads=settings.threads, max_image_pixels=settings.max_image_pixels, default=default
        )
        self.repository = repository
        self.dataplane = rt.DataPlane(repository, settings)
        self.url = f"local:{source}"
        self._rt = rt

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
            route, found = self._rt.match(request.method, request.path)
            if route is None:
                if found:
                    raise self._rt.MethodNotAllowed(
                        f"method {request.method} is not allowed on {request.path}",
                        headers={"allow": ", ".join(self._rt.allowed(request.path))},
                    )
                raise self._rt.NotFound(f"no route {request.method} {request.path}: see /docs for the API")
            call = self._rt.Call(
                params=found,
                query=dict(request.params or {}),
                headers={k.lower(): v for k, v in request.headers.items()},
                body=request.body or b"",
            )
            reply = self.dataplane.handle(route.op, call)
            status, body, extra = reply.status, reply.body, reply.headers
        except self._rt.APIError as exc:
            status, extra = exc.status, {k.lower(): v for k, v in exc.headers.items()}
            body = json.dumps({"error": exc.message, "request_id": request_id}).encode()
            extra.setdefault("content-type", "application/json")
        headers.update(extra)
        return Response(status, headers, body)
