"""CloudWatch Embedded Metric Format on Lambda: one JSON line per invocation on stdout.

CloudWatch Logs turns the line into metrics by itself: no PutMetricData call, no extra dependency, no
added latency beyond one ``print``. Namespace ``onnxfn`` (``ONNXFN_EMF_NAMESPACE``), dimensions
``model`` and ``status_class`` (``2xx``/``4xx``/``5xx``); metrics ``latency`` (ms, the whole invocation as
the handler saw it), ``requests`` (count), ``cold_start`` (1 on a container's first invocation, else 0) and,
on the first invocation only, ``init_duration`` (ms from the start of ``onnxfn.runtime.aws``'s import to
the handler being ready: imports, model loading, warm-up; the Lambda runtime's own start is not in it).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from ._tracing import xray_trace_id

__all__ = ["instrument"]


class _Invocation:
    """What the request middleware saw of the current invocation (its access-log record)."""

    def __init__(self) -> None:
        self.record: dict[str, Any] | None = None

    def __call__(self, record: dict[str, Any]) -> None:
        self.record = record


def instrument(
    handler: Callable[[Any, Any], Any], hooks: list[Callable[[dict[str, Any]], None]], init_start: float
) -> Callable[[Any, Any], Any]:
    """``handler`` that prints one EMF line per invocation. ``hooks`` are the app's request hooks
    (``app.state.request_hooks``); ``init_start`` is ``time.perf_counter()`` at the start of init."""
    seen = _Invocation()
    hooks.append(seen)
    init_ms = (time.perf_counter() - init_start) * 1000.0
    namespace = os.environ.get("ONNXFN_EMF_NAMESPACE") or "onnxfn"
    state = {"cold": True}

    def emf_handler(event: Any, context: Any) -> Any:
        start = time.perf_counter()
        seen.record = None
        status = 500
        try:
            response = handler(event, context)
            if isinstance(response, dict) and isinstance(response.get("statusCode"), int):
                status = response["statusCode"]
            return response
        finally:
            cold = state["cold"]
            state["cold"] = False
            record = seen.record or {}
            _emit(
                namespace,
                latency_ms=(time.perf_counter() - start) * 1000.0,
                model=record.get("model") or "none",
                route=record.get("route") or "other",
                status=int(record.get("status") or status),
                cold=cold,
                init_ms=init_ms if cold else None,
                request_id=getattr(context, "aws_request_id", None),
            )

    emf_handler.__wrapped__ = handler  # type: ignore[attr-defined]
    return emf_handler


def _emit(
    namespace: str,
    *,
    latency_ms: float,
    model: str,
    route: str,
    status: int,
    cold: bool,
    init_ms: float | None,
    request_id: str | None,
) -> None:
    metrics = [
        {"Name": "latency", "Unit": "Milliseconds"},
        {"Name": "requests", "Unit": "Count"},
        {"Name": "cold_start", "Unit": "Count"},
    ]
    line: dict[str, Any] = {
        "_aws": {
            "Timestamp": int(time.time() * 1000),
            "CloudWatchMetrics": [
                {"Namespace": namespace, "Dimensions": [["model", "status_class"]], "Metrics": metrics}
            ],
        },
        "model": model,
        "status_class": f"{status // 100}xx",
        "latency": round(latency_ms, 3),
        "requests": 1,
        "cold_start": 1 if cold else 0,
        # Not dimensions (no extra metric cost): searchable properties of the log line.
        "status": status,
        "route": route,
    }
    if init_ms is not None:
        metrics.append({"Name": "init_duration", "Unit": "Milliseconds"})
        line["init_duration"] = round(init_ms, 3)
    if request_id:
        line["aws_request_id"] = request_id
    trace = xray_trace_id()
    if trace:
        line["xray_trace_id"] = trace
    sys.stdout.write(json.dumps(line, separators=(",", ":")) + "\n")
    sys.stdout.flush()
