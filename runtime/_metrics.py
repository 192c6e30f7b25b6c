"""Prometheus metrics for ``GET /metrics`` (prometheus_client, imported only when metrics are on).

One set of metrics per process (as prometheus_client's own default registry), shared by every app in it:

- ``onnxfn_requests_total{model,route,status}``: ``route`` is the route template from ``_routes.py``
  (``/v2/models/{name}/infer``), never the raw path, and ``model`` is set only for a model that is loaded,
  so neither label grows with what clients send;
- ``onnxfn_request_duration_seconds{route}`` and ``onnxfn_inference_duration_seconds{model}`` histograms;
- ``onnxfn_batch_size{model}``: rows per ``session.run`` (a fused dynamic batch counts once, merged);
- ``onnxfn_models_loaded`` and ``onnxfn_model_load_failures_total{model}``.

Under ``onnxfn serve --workers N`` the server sets ``PROMETHEUS_MULTIPROC_DIR`` (a fresh temp dir) before
the workers start; each worker writes its samples there and a scrape, answered by any one worker, sums
them (prometheus_client's multiprocess mode). A worker marks itself dead when it exits.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

__all__ = ["Metrics", "enabled", "get", "observe_run"]

_LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)

_instance: Metrics | None = None
_lock = threading.Lock()


class Metrics:
    """The process's metrics and their exposition."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

        disable_created_metrics()  # no *_created series: half the exposition, nothing a dashboard uses
        self.multiprocess_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None
        if self.multiprocess_dir:
            _forget_dead_workers(self.multiprocess_dir)
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "onnxfn_requests", "HTTP requests answered", ("model", "route", "status"), registry=r
        )
        self.request_duration = Histogram(
            "onnxfn_request_duration_seconds",
            "Time from request to response start",
            ("route",),
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.inference_duration = Histogram(
            "onnxfn_inference_duration_seconds",
            "Time in onnxruntime session.run",
            ("model",),
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "onnxfn_batch_size", "Rows per session.run", ("model",), buckets=_BATCH_BUCKETS, registry=r
        )
        # livemin: with several workers, the fewest any live worker has (an alert sees a worker short of one).
        self.models_loaded = Gauge(
            "onnxfn_models_loaded", "Models loaded and served", registry=r, multiprocess_mode="livemin"
        )
        self.load_failures = Counter(
            "onnxfn_model_load_failures", "Models refused at load or reload", ("model",), registry=r
        )

    def observe_request(self, record: dict[str, Any]) -> None:
        """One answered request, from the access-log record (``route``, ``model``, ``status``, ``ms``)."""
        route = record.get("route") or "other"
        self.requests.labels(record.get("model") or "", route, str(record["status"])).inc()
        self.request_duration.labels(route).observe(record["ms"] / 1000.0)

    def observe_run(self, model: str, rows: int, seconds: float) -> None:
        self.inference_duration.labels(model).observe(seconds)
        self.batch_size.labels(model).observe(rows)

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type (all workers' samples in multiprocess mode)."""
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

        if self.multiprocess_dir:
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=self.multiprocess_dir)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def mark_dead(self) -> None:
        """Drop this process's live gauges from the multiprocess dir (called as a worker exits)."""
        if self.multiprocess_dir:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(os.getpid(), path=self.multiprocess_dir)


def _forget_dead_workers(path: str) -> None:
    """Drop the live gauges of workers that died without saying so (killed, OOM): uvicorn restarts a
    crashed worker, and its replacement calls this, so ``onnxfn_models_loaded`` counts live workers only."""
    from prometheus_client import multiprocess

    for file in Path(path).glob("gauge_live*_*.db"):
        pid = file.stem.rsplit("_", 1)[-1]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            multiprocess.mark_process_dead(int(pid), path=path)
        except PermissionError:  # alive, another user's
            continue


def enable() -> Metrics:
    """The process's metrics, created on first use (this is where prometheus_client is imported)."""
    global _instance
    with _lock:
        if _instance is None:
            try:
                _instance = Metrics()
            except ImportError:
                raise RuntimeError(
                    "metrics need prometheus_client: pip install 'onnxfn[serve]', or set ONNXFN_METRICS=false"
                ) from None
        return _instance


def get() -> Metrics | None:
    """The process's metrics, or ``None`` when no app turned them on."""
    return _instance


def enabled() -> bool:
    return _instance is not None


def observe_run(model: str, rows: int, seconds: float) -> None:
    """Called by ``Model.run`` around each ``session.run``; nothing when metrics are off."""
    if _instance is not None:
        _instance.observe_run(model, rows, seconds)


def model_refused(model: str) -> None:
    if _instance is not None:
        _instance.load_failures.labels(model).inc()


def models_loaded(count: int) -> None:
    if _instance is not None:
        _instance.models_loaded.set(count)
