"""One pure-ASGI middleware for every request: request id, trace context, body limit, auth, timing, a JSON
log line and the request hooks (Prometheus metrics, Lambda's EMF line) fed from that same record.

Pure ASGI (no BaseHTTPMiddleware) keeps the per-request cost in microseconds and lets the body limit
act while the body streams in, before it is all read.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterable
from typing import Any

from ._auth import OPEN_PATHS, authorized, is_open, key_from_headers
from ._errors import APIError, BadRequest, HeadersTooLarge, PayloadTooLarge, Unauthorized
from ._routes import match
from ._tracing import start_request

log = logging.getLogger("onnxfn.access")
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


def json_error(status: int, message: str, request_id: str | None = None) -> bytes:
    body: dict[str, Any] = {"error": message}
    if request_id:
        body["request_id"] = request_id
    return json.dumps(body).encode()


class RequestMiddleware:
    def __init__(
        self,
        app: Any,
        *,
        api_key_hashes: tuple[str, ...],
        max_body_bytes: int,
        max_header_bytes: int = 16384,
        open_paths: Iterable[str] = OPEN_PATHS,
        hooks: list[Callable[[dict[str, Any]], None]] | None = None,
    ) -> None:
        self.app = app
        self.hashes = api_key_hashes
        self.max_body = max_body_bytes
        self.max_headers = max_header_bytes
        self.open_paths = frozenset(open_paths)
        # Called with each request's log record once it is answered (metrics, EMF). A list the app owns,
        # so hooks can be added after the app is built (the Lambda handler adds its EMF one).
        self.hooks = hooks if hooks is not None else []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        incoming = headers.get("x-request-id", "")
        request_id = incoming if _SAFE_ID.match(incoming) else os.urandom(16).hex()
        idem = headers.get("idempotency-key", "")
        idem = idem if _SAFE_ID.match(idem) else ""
        state = scope.setdefault("state", {})
        timings: dict[str, float] = {}
        state["timings"] = timings
        state["request_id"] = request_id
        info: dict[str, Any] = {"status": 500, "bytes_out": 0, "bytes_in": 0}
        path = scope.get("path", "")
        method = scope.get("method", "GET")
        found = match("GET" if method == "HEAD" else method, path)  # HEAD: a GET without the body
        state["route"] = found  # for the dispatcher (``_asgi.py``): one match per request
        state["headers"] = headers
        route = found[0]
        template = route.path if route is not None else "other"
        trace = start_request(headers, method, template)
        extra = [(b"x-request-id", request_id.encode()), (b"traceparent", trace.header().encode())]
        if idem:
            extra.append((b"idempotency-key", idem.encode()))

        async def send_wrapper(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                info["status"] = message["status"]
                timings["total"] = (time.perf_counter() - start) * 1000
                timing = ", ".join(f"{k};dur={v:.2f}" for k, v in timings.items())
                message["headers"] = [
                    *message.get("headers", []),
                    *extra,
                    (b"server-timing", timing.encode()),
                ]
                info["started"] = True
            elif message["type"] == "http.response.body":
                info["bytes_out"] += len(message.get("body", b""))
            await send(message)

        async def reject(error: APIError) -> None:
            body = json_error(error.status, error.message, request_id)
            hdrs = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            hdrs += [(k.lower().encode(), v.encode()) for k, v in error.headers.items()]
            await send_wrapper({"type": "http.response.start", "status": error.status, "headers": hdrs})
            await send_wrapper({"type": "http.response.body", "body": body})

        try:
            header_bytes = sum(len(k) + len(v) + 4 for k, v in scope.get("headers", []))
            if header_bytes > self.max_headers:
                raise HeadersTooLarge(
                    f"request headers are {header_bytes:,} bytes, above the limit of {self.max_headers:,} "
                    "(ONNXFN_MAX_HEADER_BYTES): send fewer or shorter headers"
                )
            if self.hashes and not is_open(path, self.open_paths):
                key = key_from_headers(headers)
                if not authorized(key, self.hashes):
                    raise Unauthorized(
                        "invalid API key"
                        if key is not None
                        else "missing API key: send 'x-api-key: KEY' or 'Authorization: Bearer KEY'",
                        headers={"www-authenticate": "Bearer"},
                    )
            length = headers.get("content-length")
            if length is not None:
                if not length.isdigit():
                    raise BadRequest("Content-Length is not a number")
                if int(length) > self.max_body:
                    raise _too_large(int(length), self.max_body)
            received = 0

            async def limited_receive() -> dict[str, Any]:
                nonlocal received
                message: dict[str, Any] = await receive()
                if message["type"] == "http.request":
                    received += len(message.get("body", b""))
                    info["bytes_in"] = received
                    if received > self.max_body:
                        raise _too_large(received, self.max_body, streamed=True)
                return message

            await self.app(scope, limited_receive, send_wrapper)
        except APIError as error:
            if info.get("started"):
                raise
            await reject(error)
        except Exception:
            log.exception(json.dumps({"event": "unhandled", "request_id": request_id}))
            if not info.get("started"):
                await reject(_Internal(f"internal error; quote request id {request_id} when reporting it"))
        finally:
            trace.end(info["status"])
            record = {
                "event": "request",
                "method": method,
                "path": path,
                "route": template,
                "model": state.get("model"),
                "status": info["status"],
                "ms": round((time.perf_counter() - start) * 1000, 3),
                "bytes_in": info["bytes_in"],
                "bytes_out": info["bytes_out"],
                "request_id": request_id,
            }
            if idem:
                record["idempotency_key"] = idem
            record.update(trace.log_fields())
            for hook in self.hooks:
                try:
                    hook(record)
                except Exception:  # a metrics failure never fails a request
                    log.exception(json.dumps({"event": "request_hook_failed", "request_id": request_id}))
            if log.isEnabledFor(logging.INFO):
                log.info(json.dumps(record))


class _Internal(APIError):
    status = 500


def _too_large(size: int, limit: int, *, streamed: bool = False) -> PayloadTooLarge:
    what = "body is larger than" if streamed else f"body of {size:,} bytes is above"
    return PayloadTooLarge(
        f"request {what} the limit of {limit:,} bytes (ONNXFN_MAX_BODY_BYTES): "
        "send fewer or smaller images per request (Client.predict_batch splits by bytes)"
    )
