"""The FastAPI app: REST wiring of the data plane (``_dataplane.py``) for the routes in ``_routes.py``.

Thin on purpose: a route reads the body (and multipart parts), hands a ``Call`` to the data plane in a
worker thread within the request timeout, and writes the ``Reply``. The same app serves ``onnxfn serve``
(uvicorn) and AWS Lambda (Mangum, ``aws.py``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from ._auth import OPEN_PATHS
from ._bodies import media_type
from ._dataplane import Call, DataPlane, Reply
from ._errors import APIError, BadRequest, NotReady
from ._logging import configure_logging
from ._middleware import RequestMiddleware, json_error
from ._openapi import install as install_openapi
from ._pages import install_pages
from ._repository import ModelRepository
from ._routes import ROUTES, Route
from ._settings import Settings

log = logging.getLogger("onnxfn.runtime")
_warned_open = False

__all__ = ["create_app"]


def create_app(
    source: str | Path | None = None,
    *,
    settings: Settings | None = None,
    repository: ModelRepository | None = None,
) -> FastAPI:
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
    app = FastAPI(
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
    app.add_middleware(
        RequestMiddleware,
        api_key_hashes=settings.api_key_hashes,
        max_body_bytes=settings.max_body_bytes,
        max_header_bytes=settings.max_header_bytes,
        open_paths=OPEN_PATHS | {"/metrics"} if settings.metrics_public else OPEN_PATHS,
        hooks=hooks,
    )
    for route in ROUTES:
        app.add_api_route(
            route.path,
            _endpoint(route, dataplane, settings),
            methods=[route.method],
            tags=list(route.tags),
            summary=route.summary,
            responses=route.responses,
            openapi_extra=route.openapi_extra,
            name=f"{route.op}:{route.path}",
        )
    install_openapi(app, OPEN_PATHS)
    install_pages(app)
    return app


def _endpoint(route: Route, dataplane: DataPlane, settings: Settings) -> Any:
    """A FastAPI endpoint for ``route`` whose signature names its path parameters (for OpenAPI)."""

    async def handle(request: Request, params: dict[str, str]) -> Response:
        call = Call(
            params=params,
            query=request.query_params,
            headers=request.headers,
            timings=request.state.timings,
        )
        if route.method == "POST":
            if route.op in ("predict", "explain") and media_type(
                request.headers.get("content-type", "")
            ).startswith("multipart/form-data"):
                call.instances = await _multipart(request, settings.max_batch)
            else:
                call.body = await request.body()
        try:
            reply = await _run(dataplane, route, call, settings)
        finally:
            if call.model:  # also for errors: a loaded model's name (bounded), never a name a client sent
                request.state.model = call.model
        headers = dict(reply.headers)
        media = headers.pop("content-type", "application/json")
        return Response(reply.body, status_code=reply.status, media_type=media, headers=headers)

    if "{version}" in route.path:

        async def endpoint_nv(request: Request, name: str, version: str) -> Response:
            return await handle(request, {"name": name, "version": version})

        return endpoint_nv
    if "{name}" in route.path:

        async def endpoint_n(request: Request, name: str) -> Response:
            return await handle(request, {"name": name})

        return endpoint_n

    async def endpoint(request: Request) -> Response:
        return await handle(request, {})

    return endpoint


async def _run(dataplane: DataPlane, route: Route, call: Call, settings: Settings) -> Reply:
    """Blocking operations (decode, inference) in a worker thread, within the request timeout."""
    if not route.blocking or not settings.offload:
        return dataplane.handle(route.op, call)
    try:
        with anyio.fail_after(settings.request_timeout):
            return await anyio.to_thread.run_sync(dataplane.handle, route.op, call)
    except TimeoutError:
        raise NotReady(
            f"inference took longer than {settings.request_timeout:g} s (ONNXFN_REQUEST_TIMEOUT): "
            "send smaller batches",
            headers={"retry-after": "1"},
        ) from None


async def _multipart(request: Request, max_batch: int) -> list[Any]:
    """The ``file`` parts of a multipart body, as bytes."""
    try:
        form = await request.form(max_files=max_batch + 1, max_fields=max_batch + 16)
    except Exception as exc:  # starlette raises its own MultiPartException / HTTPException
        raise BadRequest(f"malformed multipart body: {getattr(exc, 'detail', exc)}") from None
    files = []
    try:
        for key, value in form.multi_items():
            if hasattr(value, "read"):
                if key != "file":
                    raise BadRequest(f"multipart part {key!r}: name image parts 'file'")
                files.append(await value.read())
    finally:
        await form.close()
    if not files:
        raise BadRequest("multipart body has no 'file' parts: send each image as a part named 'file'")
    return files


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
