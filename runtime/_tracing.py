"""Trace context: W3C ``traceparent`` in and out, the AWS X-Ray trace id, optional OpenTelemetry spans.

Every request gets a trace id (the caller's, from a valid ``traceparent``, else a new one) and a span id
of its own; both are in the request's log line and the response carries ``traceparent`` with them, so a
caller can find the server side of its request. When the OpenTelemetry API is importable *and* an SDK
tracer provider is configured, the request and its decode / preprocess / inference phases are real spans
(children of the caller's span; the request span is the framework's own server span when it makes one, as
FastAPI ≥ 0.16x does, else one made here); otherwise those calls cost a lookup and nothing is recorded.
OpenTelemetry is never required.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["RequestTrace", "parse_traceparent", "span", "start_request", "xray_trace_id"]

# version-traceid-parentid-flags; version ff is invalid, all-zero ids are invalid (W3C Trace Context §3.2).
_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-[0-9a-zA-Z_.=-]*)?$")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16
_NULL = contextlib.nullcontext()
_otel_state: dict[str, Any] = {}


def parse_traceparent(value: str | None) -> tuple[str, str, str] | None:
    """``(trace_id, parent_span_id, flags)`` of a valid ``traceparent`` header, else ``None``."""
    if not value or len(value) > 512:
        return None
    found = _TRACEPARENT.match(value.strip())
    if found is None:
        return None
    version, trace_id, parent_id, flags, rest = found.groups()
    if version == "ff" or trace_id == _ZERO_TRACE or parent_id == _ZERO_SPAN:
        return None
    if version == "00" and rest:  # version 00 has exactly four fields
        return None
    return trace_id, parent_id, flags


@dataclass
class RequestTrace:
    """The trace context of one request, as logged and as sent back in ``traceparent``."""

    trace_id: str
    span_id: str
    parent_id: str | None
    flags: str
    otel_span: Any = None
    otel_token: Any = None

    def header(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{self.flags}"

    def log_fields(self) -> dict[str, str]:
        fields = {"trace_id": self.trace_id, "span_id": self.span_id}
        if self.parent_id:
            fields["parent_span_id"] = self.parent_id
        return fields

    def end(self, status: int) -> None:
        """Close the OpenTelemetry server span, if one was started."""
        if self.otel_span is None:
            return
        otel = _otel_state["trace"]
        if status >= 500:
            self.otel_span.set_status(otel.Status(otel.StatusCode.ERROR))
        self.otel_span.set_attribute("http.response.status_code", status)
        self.otel_span.end()
        if self.otel_token is not None:
            _otel_state["context"].detach(self.otel_token)


def start_request(headers: Mapping[str, str], method: str, route: str) -> RequestTrace:
    """The trace of a new request: continues a valid incoming ``traceparent``, else starts a trace."""
    parsed = parse_traceparent(headers.get("traceparent"))
    trace_id, parent_id, flags = parsed if parsed else (secrets.token_hex(16), None, "01")
    trace = RequestTrace(trace_id, secrets.token_hex(8), parent_id, flags)
    otel = _recording_otel()
    if otel is not None:
        current = otel.get_current_span()
        if current.is_recording():  # the framework's own server span (FastAPI instruments itself): use it
            sc = current.get_span_context()
            trace.trace_id, trace.span_id = f"{sc.trace_id:032x}", f"{sc.span_id:016x}"
            return trace
        from opentelemetry import propagate

        parent_ctx = propagate.extract(dict(headers)) if parsed else None
        span_obj = otel.get_tracer("onnxfn.runtime").start_span(
            f"{method} {route}",
            context=parent_ctx,
            kind=otel.SpanKind.SERVER,
            attributes={"http.request.method": method, "http.route": route},
        )
        sc = span_obj.get_span_context()
        trace.trace_id, trace.span_id = f"{sc.trace_id:032x}", f"{sc.span_id:016x}"
        trace.otel_span = span_obj
        trace.otel_token = _otel_state["context"].attach(otel.set_span_in_context(span_obj))
    return trace


def span(name: str, **attributes: Any) -> contextlib.AbstractContextManager[Any]:
    """An OpenTelemetry span named ``name`` (child of the current one) when tracing is on, else a no-op."""
    otel = _recording_otel()
    if otel is None:
        return _NULL
    return otel.get_tracer("onnxfn.runtime").start_as_current_span(name, attributes=attributes or None)


def _recording_otel() -> Any:
    """``opentelemetry.trace`` when importable and a real (SDK) tracer provider is set, else ``None``."""
    otel = _otel_state.get("trace", False)
    if otel is False:
        try:
            from opentelemetry import context, trace
        except ImportError:
            otel = None
        else:
            otel = trace
            _otel_state["context"] = context
        _otel_state["trace"] = otel
    if otel is None:
        return None
    provider = otel.get_tracer_provider()
    if isinstance(provider, (otel.ProxyTracerProvider, otel.NoOpTracerProvider)):
        return None
    return otel


def xray_trace_id() -> str | None:
    """The X-Ray trace id of the current Lambda invocation (``Root=`` of ``_X_AMZN_TRACE_ID``)."""
    raw = os.environ.get("_X_AMZN_TRACE_ID")
    if not raw:
        return None
    for part in raw.split(";"):
        key, _, value = part.partition("=")
        if key.strip() == "Root" and value:
            return value.strip()[:64]
    return None
