"""The FastAPI app: KServe V2 routes, the friendly predict API and the docs (DESIGN.md, "HTTP API")."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import anyio
import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from ._auth import OPEN_PATHS
from ._errors import APIError, NotReady
from ._middleware import RequestMiddleware, json_error
from ._model import Model
from ._openapi import install as install_openapi
from ._openapi import request_body, responses
from ._predict import parse_top_k, predict_payload, read_instances
from ._repository import ModelRepository
from ._settings import Settings
from ._v2 import HEADER, encode_response, parse_request
from .preprocess import check_batch

log = logging.getLogger("onnxfn.runtime")
_warned_open = False


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(payload, separators=(",", ":")).encode()
    return Response(body, status_code=status, media_type="application/json", headers=headers)


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
            max_image_pixels=settings.max_image_pixels,
            default=settings.default_model,
        )
    global _warned_open
    if not settings.api_key_hashes and not _warned_open:
        _warned_open = True
        log.warning(
            json.dumps({"event": "open_server", "message": "no ONNXFN_API_KEY_HASHES: every route is open"})
        )

    app = FastAPI(
        title="onnxfn",
        version=__version__,
        description="Keras models served with onnxruntime: KServe V2 (Open Inference Protocol) and a predict API.",
    )
    app.state.repository = repository
    app.state.settings = settings
    _install_error_handlers(app)
    app.add_middleware(
        RequestMiddleware,
        api_key_hashes=settings.api_key_hashes,
        max_body_bytes=settings.max_body_bytes,
        max_header_bytes=settings.max_header_bytes,
    )
    max_batch = settings.max_batch

    async def run(request: Request, fn: Any, *args: Any) -> Any:
        """Run blocking work (decode, inference) in a worker thread, within the request timeout."""
        if not settings.offload:
            return fn(*args)
        try:
            with anyio.fail_after(settings.request_timeout):
                return await anyio.to_thread.run_sync(fn, *args)
        except TimeoutError:
            raise NotReady(
                f"inference took longer than {settings.request_timeout:g} s (ONNXFN_REQUEST_TIMEOUT): "
                "send smaller batches",
                headers={"retry-after": "1"},
            ) from None

    # -- health and metadata -------------------------------------------------------------------
    @app.get("/v2/health/live", tags=["health"], summary="Liveness", responses=responses("Live"))
    async def live() -> Response:
        return json_response({"live": True})

    @app.get(
        "/v2/health/ready",
        tags=["health"],
        summary="Readiness: at least one model is loaded",
        responses={
            **responses("Ready"),
            503: {
                "description": "No model loaded",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Ready"}}},
            },
        },
    )
    async def ready() -> Response:
        ok = len(repository) > 0
        return json_response({"ready": ok}, status=200 if ok else 503)

    @app.get("/v2", tags=["metadata"], summary="Server metadata", responses=responses("ServerMetadata"))
    async def server_metadata() -> Response:
        return json_response({"name": "onnxfn", "version": __version__, "extensions": ["binary_tensor_data"]})

    @app.get(
        "/v1/models",
        tags=["metadata"],
        summary="The models this server has",
        responses=responses("ModelList"),
    )
    async def list_models() -> Response:
        return json_response(
            {
                "default": repository.default,
                "models": [
                    {"name": m.name, "version": m.version, "task": m.task, "labels": m.labels}
                    for m in repository.models.values()
                ],
            }
        )

    meta_responses = responses("ModelMetadata", 404)
    ready_responses = responses("ModelReady", 404)

    @app.get("/v2/models/{name}", tags=["metadata"], summary="Model metadata", responses=meta_responses)
    @app.get(
        "/v2/models/{name}/versions/{version}",
        tags=["metadata"],
        summary="Model metadata (one version)",
        responses=meta_responses,
    )
    async def model_metadata(name: str, version: str | None = None) -> Response:
        return json_response(repository.get(name, version).describe())

    @app.get("/v2/models/{name}/ready", tags=["health"], summary="Model readiness", responses=ready_responses)
    @app.get(
        "/v2/models/{name}/versions/{version}/ready",
        tags=["health"],
        summary="Model readiness (one version)",
        responses=ready_responses,
    )
    async def model_ready(name: str, version: str | None = None) -> Response:
        model = repository.get(name, version)
        return json_response({"name": model.name, "ready": True})

    # -- inference -----------------------------------------------------------------------------
    infer_doc = request_body("application/json", "application/octet-stream", schema="InferRequest")
    infer_responses = {
        **responses("InferResponse", 404, 503),
        200: {
            "description": "Output tensors: JSON, or a JSON header + binary tensors (binary-data extension)",
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/InferResponse"}},
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            },
        },
    }

    @app.post(
        "/v2/models/{name}/infer",
        tags=["inference"],
        summary="KServe V2 inference",
        openapi_extra=infer_doc,
        responses=infer_responses,
    )
    @app.post(
        "/v2/models/{name}/versions/{version}/infer",
        tags=["inference"],
        summary="KServe V2 inference (one version)",
        openapi_extra=infer_doc,
        responses=infer_responses,
    )
    async def infer(name: str, request: Request, version: str | None = None) -> Response:
        model = repository.get(name, version)
        request.state.model = model.name
        body = await request.body()
        timings = request.state.timings
        t0 = time.perf_counter()
        parsed = parse_request(body, request.headers.get(HEADER), model, max_batch)
        timings["decode"] = (time.perf_counter() - t0) * 1000
        results = await run(request, _timed_run, model, parsed.inputs, parsed.outputs, timings)
        content, headers = encode_response(model, results, parsed)
        media = headers.pop("content-type")
        return Response(content, media_type=media, headers=headers)

    predict_doc = request_body(
        "application/octet-stream",
        "image/png",
        "image/jpeg",
        "multipart/form-data",
        "application/json",
        schema="PredictRequest",
    )
    predict_responses = responses("PredictResponse", 404, 415, 503)

    async def predict(request: Request, name: str | None) -> Response:
        model = repository.get(name)
        request.state.model = model.name
        timings = request.state.timings
        t0 = time.perf_counter()
        instances, top_k = await read_instances(request, max_batch)
        check_batch(len(instances), max_batch)
        top_k = parse_top_k(request.query_params.get("top_k"), top_k)
        timings["decode"] = (time.perf_counter() - t0) * 1000
        payload = await run(request, predict_payload, model, instances, top_k, timings)
        return json_response(payload)

    @app.post(
        "/v1/models/{name}:predict",
        tags=["predict"],
        summary="Classify images or text",
        openapi_extra=predict_doc,
        responses=predict_responses,
    )
    async def predict_named(name: str, request: Request) -> Response:
        return await predict(request, name)

    @app.post(
        "/predict",
        tags=["predict"],
        summary="Classify with the default model",
        openapi_extra=predict_doc,
        responses=predict_responses,
    )
    async def predict_default(request: Request) -> Response:
        return await predict(request, None)

    install_openapi(app, OPEN_PATHS)
    return app


def _timed_run(
    model: Model, feeds: dict[str, np.ndarray], outputs: list[str] | None, timings: dict[str, float]
) -> dict[str, np.ndarray]:
    t0 = time.perf_counter()
    results = model.run(feeds, outputs)
    timings["inference"] = (time.perf_counter() - t0) * 1000
    return results


def _install_error_handlers(app: FastAPI) -> None:
    def error_response(request: Request, status: int, message: str, headers: dict | None = None) -> Response:
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


RUNTIME_LOGGERS = ("onnxfn.runtime", "onnxfn.access")


def configure_logging(level: str = "INFO") -> None:
    """One JSON line per event on stderr for the runtime's own loggers (set up once).

    They do not propagate: the Lambda runtime puts a handler on the root logger, which would print each
    line twice. Other ``onnxfn.*`` loggers (the client's, the converter's) are left to the application.
    """
    for name in RUNTIME_LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(level if level in ("DEBUG", "INFO", "WARNING", "ERROR") else "INFO")
        if not any(getattr(h, "_onnxfn", False) for h in logger.handlers):
            handler = logging.StreamHandler()
            handler.setFormatter(_JsonFormatter())
            handler._onnxfn = True  # type: ignore[attr-defined]
            logger.addHandler(handler)
            logger.propagate = False


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        try:
            payload = json.loads(message)
            if not isinstance(payload, dict):
                payload = {"message": message}
        except ValueError:
            payload = {"message": message}
        out = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            **payload,
        }
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out)
