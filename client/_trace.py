"""W3C trace context (``traceparent``) on outgoing requests.

Precedence: a ``traceparent=`` given to the call, then a ``traceparent`` in the client's ``headers``,
then, when OpenTelemetry is in use in this process (``opentelemetry`` already imported) and a span is
current, that span's context through OpenTelemetry's global propagator. OpenTelemetry is never imported
by the client on its own and never required.
"""

from __future__ import annotations

import re
import sys

__all__ = ["check_traceparent", "inject_current"]

# version "00"-"fe", 32 hex trace id (not all zero), 16 hex parent id (not all zero), 2 hex flags
_TRACEPARENT = re.compile(
    r"^(?!ff)[0-9a-f]{2}-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}(-.*)?$"
)


def check_traceparent(value: str) -> str:
    """``value`` if it is a valid W3C ``traceparent`` header, else ``ValueError`` saying the format."""
    value = value.strip()
    if not _TRACEPARENT.match(value):
        raise ValueError(
            f"traceparent {value!r} is not a W3C trace context: expected "
            "'00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>'"
        )
    return value


def inject_current(headers: dict[str, str]) -> None:
    """Add ``traceparent`` (and ``tracestate``) for the current OpenTelemetry span, if there is one."""
    if "opentelemetry" not in sys.modules:
        return
    try:
        from opentelemetry import propagate, trace
    except ImportError:  # a partial install: tracing is optional
        return
    if not trace.get_current_span().get_span_context().is_valid:
        return
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    for name, value in carrier.items():
        headers.setdefault(name.lower(), value)
