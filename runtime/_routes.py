"""The one route table: method, path and data-plane operation of every API route, with its OpenAPI doc.

The HTTP app dispatches by it (``_asgi.py``) and documents it (``_openapi.paths``); ``Client.local`` matches
paths against the same table (:func:`match`), so a route added here exists on uvicorn, on Lambda and in
process at once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ._openapi import request_body, responses

__all__ = ["ROUTES", "Route", "match"]


@dataclass(frozen=True)
class Route:
    """``op`` names a ``DataPlane`` operation; ``blocking`` ones run off the event loop under uvicorn."""

    method: str
    path: str
    op: str
    summary: str
    tags: tuple[str, ...]
    responses: dict[int | str, dict[str, Any]]
    openapi_extra: dict[str, Any] | None = None
    blocking: bool = False
    regex: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        pattern = re.sub(
            r"\{(\w+)\}", r"(?P<\1>[^/]+)", re.escape(self.path).replace(r"\{", "{").replace(r"\}", "}")
        )
        object.__setattr__(self, "regex", re.compile(f"^{pattern}$"))


_READY_503 = {
    **responses("Ready"),
    503: {
        "description": "No model loaded",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Ready"}}},
    },
}
_META = responses("ModelMetadata", 404)
_MODEL_READY = responses("ModelReady", 404)
_INFER_DOC = request_body("application/json", "application/octet-stream", schema="InferRequest")
_INFER = {
    **responses("InferResponse", 404, 503),
    200: {
        "description": "Output tensors: JSON, or a JSON header + binary tensors (binary-data extension)",
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/InferResponse"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    },
}
_PREDICT_DOC = request_body(
    "application/octet-stream",
    "image/png",
    "image/jpeg",
    "multipart/form-data",
    "application/json",
    schema="PredictRequest",
)
_PREDICT = responses("PredictResponse", 404, 415, 503)
_EXPLAIN_DOC = {
    **request_body(
        "application/octet-stream",
        "image/png",
        "image/jpeg",
        "multipart/form-data",
        "application/json",
        schema="ExplainRequest",
    ),
    "parameters": [
        {
            "name": "target",
            "in": "query",
            "required": False,
            "description": "the class to explain: a label or an index (default: the top class)",
            "schema": {"type": "string"},
        },
        {
            "name": "method",
            "in": "query",
            "required": False,
            "description": "images: occlusion (default) or rise; text: occlusion",
            "schema": {"type": "string", "enum": ["occlusion", "rise"]},
        },
    ],
}
_EXPLAIN = responses("ExplainResponse", 404, 415, 503)
_METRICS = {
    200: {
        "description": "Prometheus text exposition (onnxfn_requests_total, latency histograms, ...)",
        "content": {"text/plain": {"schema": {"type": "string"}}},
    },
    **{k: v for k, v in responses("Live", 404).items() if k != 200},
}

ROUTES: tuple[Route, ...] = (
    Route("GET", "/v2/health/live", "live", "Liveness", ("health",), responses("Live")),
    Route(
        "GET", "/v2/health/ready", "ready", "Readiness: at least one model is loaded", ("health",), _READY_503
    ),
    Route("GET", "/v2", "server_metadata", "Server metadata", ("metadata",), responses("ServerMetadata")),
    Route(
        "GET",
        "/v1/models",
        "list_models",
        "The models this server has",
        ("metadata",),
        responses("ModelList"),
    ),
    Route("GET", "/v2/models/{name}", "model_metadata", "Model metadata", ("metadata",), _META),
    Route(
        "GET",
        "/v2/models/{name}/versions/{version}",
        "model_metadata",
        "Model metadata (one version)",
        ("metadata",),
        _META,
    ),
    Route("GET", "/v2/models/{name}/ready", "model_ready", "Model readiness", ("health",), _MODEL_READY),
    Route(
        "GET",
        "/v2/models/{name}/versions/{version}/ready",
        "model_ready",
        "Model readiness (one version)",
        ("health",),
        _MODEL_READY,
    ),
    Route(
        "POST",
        "/v2/models/{name}/infer",
        "infer",
        "KServe V2 inference",
        ("inference",),
        _INFER,
        _INFER_DOC,
        blocking=True,
    ),
    Route(
        "POST",
        "/v2/models/{name}/versions/{version}/infer",
        "infer",
        "KServe V2 inference (one version)",
        ("inference",),
        _INFER,
        _INFER_DOC,
        blocking=True,
    ),
    Route(
        "POST",
        "/v1/models/{name}:predict",
        "predict",
        "Classify images or text",
        ("predict",),
        _PREDICT,
        _PREDICT_DOC,
        blocking=True,
    ),
    Route(
        "POST",
        "/predict",
        "predict",
        "Classify with the default model",
        ("predict",),
        _PREDICT,
        _PREDICT_DOC,
        blocking=True,
    ),
    Route(
        "POST",
        "/v1/models/{name}:explain",
        "explain",
        "Explain a prediction: pixel heatmap (images) or word scores (text)",
        ("explain",),
        _EXPLAIN,
        _EXPLAIN_DOC,
        blocking=True,
    ),
    Route(
        "POST",
        "/explain",
        "explain",
        "Explain a prediction of the default model",
        ("explain",),
        _EXPLAIN,
        _EXPLAIN_DOC,
        blocking=True,
    ),
    Route(
        "GET",
        "/metrics",
        "metrics",
        "Prometheus metrics (needs a key unless ONNXFN_METRICS_PUBLIC)",
        ("operations",),
        _METRICS,
    ),
)


def match(method: str, path: str) -> tuple[Route, dict[str, str]] | tuple[None, bool]:
    """The route for ``method path`` and its path parameters; else ``(None, path_exists)``
    (a known path with another method is a 405, an unknown path a 404)."""
    known = False
    for route in ROUTES:
        found = route.regex.match(path)
        if found is None:
            continue
        if route.method == method.upper():
            return route, found.groupdict()
        known = True
    return None, known
