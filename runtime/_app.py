"""The app: one ASGI entry for ``onnxfn serve`` (uvicorn) and AWS Lambda (Mangum, ``aws.py``).

A request goes through ``RequestMiddleware`` (request id, auth, limits, log line, metrics), then the API
routes of ``_routes.py`` to the data plane (``_asgi.Dispatch``), and anything else to FastAPI, which serves
the playground, ``/docs``, ``/openapi.json`` (generated from the same route table) and the 404/405 answers.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from ._asgi import Dispatch
from ._auth import OPEN_PATHS
from ._dataplane import DataPlane
from ._errors import APIError
from ._logging import configure_logging
from ._middleware import RequestMiddleware, json_error
from ._openapi import install as install_openapi
from ._pages import install_pages
from ._repository import ModelRepository
from ._routes import ROUTES
from ._settings import Settings

log = logging.getLogger("onnxfn.runtime")
_warned_open = False

__all__ = ["App", "create_app"]


class App(FastAPI):
    """FastAPI with the onnxfn front: HTTP requests pass ``RequestMiddleware`` and ``Dispatch`` first."""

    front: Any = None  # set by create_app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and self.front is not None:
            await self.front(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)

    async def fallback(self, scope: Any, receive: Any, send: Any) -> None:
        """FastAPI's own handling (pages, docs, 404/405), behind the front."""
        await super().__call__(scope, receive, send)


def create_app(
    source: str | Path | None = None,
    *,
    settings: Settings | None = None,
    repository: ModelRepository | None = None,
) -> App:
    """The onnxfn app for the models in ``source`` (a file, a directory or ``s3://…``).

    Without ``source``, ``settings.model_dir`` (``ONNXFN_MODEL_DIR``) is used. Models load here, eagerly.
    """
    from onnxfn import __version__

    settings = settings or Settings.from_env()
    configure_logging(settings.log_level)
    if repository is None:
        repository = ModelRepository.load(
            source if source is not None else settings.model_dir,
            threads=settings.threads,
            instances=settings.instances,
            max_image_pixels=settings.max_image_pixels,
            default=settings.default_model,
        )
    _warn_if_open(settings)
    app = App(
        title="onnxfn",
        version=__version__,
        description="Keras models served with onnxruntime: KServe V2 (Open Inference Protocol) and a predict API.",
        docs_url=None,  # _pages.py serves /docs from the package, not from a CDN
        redoc_url=None,
    )
    dataplane = DataPlane(repository, settings)
    hooks: list[Any] = []
    if settings.metrics:
        from ._metrics import enable

        dataplane.metrics = metrics = enable()
        hooks.append(metrics.observe_request)
        metrics.models_loaded.set(len(repository))
        for name in repository.errors:
            metrics.load_failures.labels(name).inc()
    app.state.repository = repository
    app.state.settings = settings
    app.state.dataplane = dataplane
    app.state.request_hooks = hooks
    _install_error_handlers(app)
    app.front = RequestMiddleware(
        Dispatch(dataplane, settings, app.fallback),
        api_key_hashes=settings.api_key_hashes,
        max_body_bytes=settings.max_body_bytes,
        max_header_bytes=settings.max_header_bytes,
        open_paths=OPEN_PATHS | {"/metrics"} if settings.metrics_public else OPEN_PATHS,
        hooks=hooks,
    )
    install_openapi(app, OPEN_PATHS, ROUTES)
    install_pages(app)
    return app


def _warn_if_open(settings: Settings) -> None:
    global _warned_open
    if not settings.api_key_hashes and not _warned_open:
        _warned_open = True
        log.warning(
            json.dumps({"event": "open_server", "message": "no ONNXFN_API_KEY_HASHES: every route is open"})
        )


def _install_error_handlers(app: FastAPI) -> None:
    def error_response(
        request: Request, status: int, message: str, headers: dict[str, str] | None = None
    ) -> Response:
        request_id = request.scope.get("state", {}).get("request_id")
        return Response(
            json_error(status, message, request_id), status, headers, media_type="application/json"
        )

    @app.exception_handler(APIError)
    async def api_error(request: Request, exc: APIError) -> Response:
        return error_response(request, exc.status, exc.message, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        messages = {
            404: f"no route {request.method} {request.url.path}: see /docs for the API",
            405: f"method {request.method} is not allowed on {request.url.path}",
        }
        message = messages.get(exc.status_code, str(exc.detail))
        return error_response(request, exc.status_code, message, getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return error_response(request, 400, f"invalid request: {where}: {first.get('msg', 'invalid')}")
