"""Lambda event fixtures in the shapes AWS documents, and a context object like the Python runtime's."""

from __future__ import annotations

import base64
import copy
import json
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).parent
KINDS = ("apigw_rest_v1", "http_api_v2", "function_url", "alb")


@dataclass
class LambdaContext:
    function_name: str = "onnxfn-prod-api"
    function_version: str = "$LATEST"
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:onnxfn-prod-api"
    memory_limit_in_mb: int = 1769
    aws_request_id: str = "c6af9ac6-7b61-11e6-9a41-93e812345678"
    log_group_name: str = "/aws/lambda/onnxfn-prod-api"
    log_stream_name: str = "2026/11/23/[$LATEST]abcdef"

    def get_remaining_time_in_millis(self) -> int:
        return 29_000


def event(
    kind: str,
    *,
    method: str = "POST",
    path: str = "/predict",
    body: bytes | str | None = None,
    headers: dict[str, str] | None = None,
    query: str = "",
    binary: bool = True,
) -> dict:
    """A ``kind`` event for ``method path`` carrying ``body`` (base64 when ``binary``)."""
    data = copy.deepcopy(json.loads((HERE / f"{kind}.json").read_text()))
    raw = body.encode() if isinstance(body, str) else (body or b"")
    encoded = base64.b64encode(raw).decode() if binary else raw.decode()
    extra = {k.lower(): v for k, v in (headers or {}).items()}
    if kind == "apigw_rest_v1":
        data.update(path=path, httpMethod=method, body=encoded if raw else None, isBase64Encoded=binary)
        data["requestContext"].update(httpMethod=method, path=f"/prod{path}")
        data["pathParameters"] = {"proxy": path.lstrip("/")}
        hdrs = {k: v for k, v in data["headers"].items() if k.lower() not in extra}
        hdrs.update(extra)
        data["headers"] = hdrs
        data["multiValueHeaders"] = {k: [v] for k, v in hdrs.items()}
        if query:
            pairs = [p.split("=", 1) for p in query.split("&")]
            data["queryStringParameters"] = {k: v for k, v in pairs}
            data["multiValueQueryStringParameters"] = {k: [v] for k, v in pairs}
    elif kind in ("http_api_v2", "function_url"):
        data.update(rawPath=path, body=encoded, isBase64Encoded=binary, rawQueryString=query)
        if kind == "http_api_v2":
            data["routeKey"] = data["requestContext"]["routeKey"] = f"{method} {path}"
        data["requestContext"]["http"].update(method=method, path=path)
        data["headers"].update(extra)
        data["headers"]["content-length"] = str(len(raw))
        if query:
            data["queryStringParameters"] = dict(p.split("=", 1) for p in query.split("&"))
    elif kind == "alb":
        data.update(path=path, httpMethod=method, body=encoded, isBase64Encoded=binary)
        data["headers"].update(extra)
        if query:
            data["queryStringParameters"] = dict(p.split("=", 1) for p in query.split("&"))
    else:
        raise ValueError(kind)
    return data


def response_body(response: dict) -> bytes:
    body = response.get("body") or ""
    return base64.b64decode(body) if response.get("isBase64Encoded") else body.encode()


def response_json(response: dict) -> dict:
    return json.loads(response_body(response))


def response_headers(response: dict) -> dict[str, str]:
    headers = {k.lower(): v for k, v in (response.get("headers") or {}).items()}
    for k, v in (response.get("multiValueHeaders") or {}).items():
        headers[k.lower()] = v[-1]
    return headers
