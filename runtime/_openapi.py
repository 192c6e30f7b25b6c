"""The OpenAPI description of the bodies the handlers parse by hand (they skip pydantic for speed).

Precise enough for schemathesis to check every response against it: each route lists its statuses.
"""

from __future__ import annotations

import re
from typing import Any

from onnxfn._wire import DATATYPES as _WIRE_DATATYPES

DATATYPES = list(_WIRE_DATATYPES)


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(name: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(name)}}}


_ERRORS = {
    400: "Malformed, undecodable, wrong shape/dtype, or non-finite input",
    401: "Missing or wrong API key (when keys are configured)",
    404: "Unknown model or version",
    413: "Body or batch above the limit",
    415: "Unsupported Content-Type",
    431: "Request headers above the limit",
    503: "Not ready, or inference timed out",
}


def responses(ok: str, *errors: int, ok_description: str = "Success") -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: its success schema plus the errors it can answer."""
    out: dict[int | str, dict[str, Any]] = {200: _json(ok, ok_description)}
    for status in (400, 401, 413, 431, *errors):  # any request can be malformed, unauthorised or too large
        out[status] = _json("Error", _ERRORS[status])
    return out


def request_body(*media: str, schema: str | None = None) -> dict[str, Any]:
    binary = {"schema": {"type": "string", "format": "binary"}}
    content: dict[str, Any] = {}
    for m in media:
        if m == "application/json":
            content[m] = {"schema": _ref(schema or "")}
        elif m == "multipart/form-data":
            content[m] = {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "array", "items": {"type": "string", "format": "binary"}}
                    },
                }
            }
        else:
            content[m] = binary
    return {"requestBody": {"required": True, "content": content}}


SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "string"}, "request_id": {"type": "string"}},
    },
    "Live": {"type": "object", "required": ["live"], "properties": {"live": {"type": "boolean"}}},
    "Ready": {"type": "object", "required": ["ready"], "properties": {"ready": {"type": "boolean"}}},
    "ModelReady": {
        "type": "object",
        "required": ["name", "ready"],
        "properties": {"name": {"type": "string"}, "ready": {"type": "boolean"}},
    },
    "ServerMetadata": {
        "type": "object",
        "required": ["name", "version", "extensions"],
        "properties": {
            "name": {"type": "string"},
            "version": {"type": "string"},
            "extensions": {"type": "array", "items": {"type": "string"}},
        },
    },
    "TensorMetadata": {
        "type": "object",
        "required": ["name", "datatype", "shape"],
        "properties": {
            "name": {"type": "string"},
            "datatype": {"type": "string"},
            "shape": {"type": "array", "items": {"type": "integer"}},
        },
    },
    "ModelMetadata": {
        "type": "object",
        "required": ["name", "versions", "platform", "inputs", "outputs"],
        "properties": {
            "name": {"type": "string"},
            "versions": {"type": "array", "items": {"type": "string"}},
            "platform": {"type": "string"},
            "inputs": {"type": "array", "items": _ref("TensorMetadata")},
            "outputs": {"type": "array", "items": _ref("TensorMetadata")},
            "parameters": {"type": "object"},
        },
    },
    "ModelList": {
        "type": "object",
        "required": ["models"],
        "properties": {
            "default": {"type": ["string", "null"]},
            "models": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name", "version", "task"],
                    "properties": {
                        "name": {"type": "string"},
                        "version": {"type": "string"},
                        "task": {"type": "string"},
                        "labels": {"type": ["array", "null"], "items": {"type": "string"}},
                    },
                },
            },
        },
    },
    "InferInput": {
        "type": "object",
        "required": ["name", "shape", "datatype"],
        "properties": {
            "name": {"type": "string"},
            "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
            "datatype": {"type": "string", "enum": DATATYPES},
            "parameters": {
                "type": "object",
                "properties": {"binary_data_size": {"type": "integer", "minimum": 0}},
            },
            "data": {"type": "array"},
        },
    },
    "InferRequest": {
        "type": "object",
        "required": ["inputs"],
        "properties": {
            "id": {"type": "string"},
            "parameters": {"type": "object", "properties": {"binary_data_output": {"type": "boolean"}}},
            "inputs": {"type": "array", "minItems": 1, "items": _ref("InferInput")},
            "outputs": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {
                        "name": {"type": "string"},
                        "parameters": {"type": "object", "properties": {"binary_data": {"type": "boolean"}}},
                    },
                },
            },
        },
    },
    "InferResponse": {
        "type": "object",
        "required": ["model_name", "outputs"],
        "properties": {
            "model_name": {"type": "string"},
            "model_version": {"type": "string"},
            "id": {"type": "string"},
            "outputs": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name", "datatype", "shape"],
                    "properties": {
                        "name": {"type": "string"},
                        "datatype": {"type": "string"},
                        "shape": {"type": "array", "items": {"type": "integer"}},
                        "data": {"type": "array"},
                        "parameters": {"type": "object"},
                    },
                },
            },
        },
    },
    "PredictRequest": {
        "type": "object",
        "required": ["instances"],
        "properties": {
            "instances": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "description": "a base64 image, a text, or a numeric array (one model input row); "
                    "for models with several inputs an object keyed by input name, e.g. "
                    '{"image": "<base64>", "features": [0.1, 2.0]}',
                    "anyOf": [
                        {"type": "string"},
                        {"type": "array"},
                        {"type": "object", "required": ["b64"], "properties": {"b64": {"type": "string"}}},
                        {"type": "object", "additionalProperties": True},
                    ],
                },
            },
            "top_k": {"type": "integer", "minimum": 1},
        },
    },
    "Prediction": {
        "type": "object",
        "required": ["label", "index", "score"],
        "properties": {
            "label": {"type": "string"},
            "index": {"type": "integer"},
            "score": {"type": "number"},
        },
    },
    "PredictResponse": {
        "type": "object",
        "required": ["model", "version"],
        "properties": {
            "model": {"type": "string"},
            "version": {"type": "string"},
            "predictions": {"type": "array", "items": {"type": "array", "items": _ref("Prediction")}},
            "outputs": {"type": "array"},
            "output": {"type": "string", "description": "models with several outputs: the one answered"},
        },
    },
    "ExplainRequest": {
        "type": "object",
        "required": ["instances"],
        "properties": {
            "instances": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "description": "a base64 image, or a text",
                    "oneOf": [
                        {"type": "string"},
                        {"type": "object", "required": ["b64"], "properties": {"b64": {"type": "string"}}},
                    ],
                },
            },
            "target": {
                "description": "the class to explain: a label or an index (default: the top class)",
                "oneOf": [{"type": "string"}, {"type": "integer", "minimum": 0}],
            },
            "method": {"type": "string", "enum": ["occlusion", "rise"]},
        },
    },
    "Explanation": {
        "type": "object",
        "required": ["label", "index", "score", "method", "masks", "complete"],
        "properties": {
            "label": {"type": "string"},
            "index": {"type": "integer"},
            "score": {"type": "number", "description": "the model's score for this class"},
            "method": {"type": "string"},
            "masks": {"type": "integer", "description": "perturbed inputs evaluated"},
            "complete": {
                "type": "boolean",
                "description": "false when the time budget (ONNXFN_EXPLAIN_BUDGET_S) cut the work short",
            },
            "heatmap": {
                "description": "images: H×W attribution in 0..1 (H, W: the model's input size)",
                "type": "array",
                "items": {"type": "array", "items": {"type": "number", "minimum": 0, "maximum": 1}},
            },
            "overlay": {"type": "string", "description": "images: base64 PNG of the heatmap over the image"},
            "tokens": {"type": "array", "items": {"type": "string"}, "description": "text: the words"},
            "scores": {
                "type": "array",
                "items": {"type": "number"},
                "description": "text: the drop of the class score without each word (negative: against)",
            },
        },
    },
    "ExplainResponse": {
        "type": "object",
        "required": ["model", "version", "explanations"],
        "properties": {
            "model": {"type": "string"},
            "version": {"type": "string"},
            "explanations": {"type": "array", "items": _ref("Explanation")},
        },
    },
}


def paths(routes: Any) -> dict[str, dict[str, Any]]:
    """OpenAPI ``paths`` for the route table (``_routes.ROUTES``): the API routes are not FastAPI's."""
    out: dict[str, dict[str, Any]] = {}
    for route in routes:
        names = re.findall(r"\{(\w+)\}", route.path)
        operation: dict[str, Any] = {
            "tags": list(route.tags),
            "summary": route.summary,
            "operationId": route.op
            + re.sub(r"\W+", "_", route.path).rstrip("_")
            + "_"
            + route.method.lower(),
            "responses": {str(k): v for k, v in route.responses.items()},
        }
        extra = dict(route.openapi_extra or {})
        parameters = [
            {"name": n, "in": "path", "required": True, "schema": {"type": "string", "title": n.title()}}
            for n in names
        ] + extra.pop("parameters", [])
        if parameters:
            operation["parameters"] = parameters
        operation.update(extra)
        out.setdefault(route.path, {})[route.method.lower()] = operation
    return out


def install(app: Any, open_paths: frozenset[str], routes: Any) -> None:
    """Add the API routes' paths, the schemas and the API-key security schemes to ``app.openapi()``."""
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return dict(app.openapi_schema)
        schema: dict[str, Any] = original()
        schema["paths"] = {**paths(routes), **schema.get("paths", {})}
        components = schema.setdefault("components", {})
        components.setdefault("schemas", {}).update(SCHEMAS)
        components["securitySchemes"] = {
            "ApiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
            "Bearer": {"type": "http", "scheme": "bearer"},
        }
        for path, operations in schema.get("paths", {}).items():
            for operation in operations.values():
                operation["security"] = [] if path in open_paths else [{"ApiKey": []}, {"Bearer": []}]
                # FastAPI adds a 422 for path parameters; onnxfn answers 400 instead.
                operation.get("responses", {}).pop("422", None)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi
