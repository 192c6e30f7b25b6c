"""W3C trace context: the client forwards a ``traceparent`` it is given (per call, per client, or the
current OpenTelemetry span's) to the server."""

from __future__ import annotations

import asyncio

import pytest
from onnxfn.client import AsyncClient, Client

from .helpers import OK_PREDICTION, TRACEPARENT

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 32
OTHER = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture
def echo(stub):
    return stub(lambda seen, n: (200, {}, OK_PREDICTION))


def test_a_traceparent_per_call_and_per_client_reaches_the_server(echo):
    with Client(echo.url) as c:
        c.predict(PNG, traceparent=TRACEPARENT)
        c.predict(PNG)
    with Client(echo.url, headers={"traceparent": TRACEPARENT}) as c:
        c.predict(PNG)
        c.predict(PNG, traceparent=OTHER)  # the call's wins over the client's
    got = [seen.headers.get("traceparent") for seen in echo.seen]
    assert got == [TRACEPARENT, None, TRACEPARENT, OTHER]


def test_the_same_traceparent_on_every_attempt(stub):
    s = stub(lambda seen, n: (503, {"retry-after-ms": "5"}, b"{}") if n < 2 else (200, {}, OK_PREDICTION))
    with Client(s.url) as c:
        c.predict(PNG, traceparent=TRACEPARENT)
    assert [seen.headers["traceparent"] for seen in s.seen] == [TRACEPARENT] * 3


def test_async_client_forwards_it(echo):
    async def main():
        async with AsyncClient(echo.url, headers={"traceparent": OTHER}) as c:
            await c.predict(PNG, traceparent=TRACEPARENT)
            await c.predict_batch([PNG], traceparent=TRACEPARENT)
            await c.predict(PNG)

    asyncio.run(main())
    assert [seen.headers.get("traceparent") for seen in echo.seen] == [TRACEPARENT, TRACEPARENT, OTHER]


@pytest.mark.parametrize("bad", ["", "00-abc-def-01", "00-" + "0" * 32 + "-00f067aa0ba902b7-01", "trace me"])
def test_a_malformed_traceparent_is_refused_before_sending(echo, bad):
    with Client(echo.url) as c, pytest.raises(ValueError, match="W3C trace context"):
        c.predict(PNG, traceparent=bad)
    with pytest.raises(ValueError, match="W3C trace context"):
        Client(echo.url, headers={"traceparent": bad})
    assert echo.seen == []


def test_the_current_opentelemetry_span_is_injected(echo):
    trace = pytest.importorskip("opentelemetry.trace")
    context = trace.SpanContext(
        trace_id=0x4BF92F3577B34DA6A3CE929D0E0E4736,
        span_id=0x00F067AA0BA902B7,
        is_remote=False,
        trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED),
    )
    with Client(echo.url) as c:
        with trace.use_span(trace.NonRecordingSpan(context)):
            c.predict(PNG)
            c.predict(PNG, traceparent=OTHER)  # an explicit one wins
        c.predict(PNG)  # no current span: nothing added
    assert [seen.headers.get("traceparent") for seen in echo.seen] == [TRACEPARENT, OTHER, None]
