"""Runtime settings, read from ``ONNXFN_*`` environment variables (DESIGN.md, "Settings")."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

MiB = 1024 * 1024
LAMBDA_MB_PER_VCPU = 1769


def _default_model_dir() -> str:
    task_root = os.environ.get("LAMBDA_TASK_ROOT")
    if task_root:
        return str(Path(task_root) / "models")
    return "models"


def default_threads() -> int:
    """Cores, or on Lambda the vCPUs its memory buys (1 vCPU per 1,769 MB)."""
    memory = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
    if memory and memory.isdigit():
        return max(1, min(6, round(int(memory) / LAMBDA_MB_PER_VCPU)))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def threads_per_session(workers: int = 1, instances: int = 1) -> int:
    """The cores shared out over worker processes and sessions (the default ``intra_op_num_threads``
    where requests run one at a time: Lambda, ``Client.local``).

    Each uvicorn worker and each model instance gets its own onnxruntime thread pool; giving every one of
    them all the cores oversubscribes the CPU (threads spin and steal time from each other).
    """
    return max(1, default_threads() // max(1, workers * instances))


def env_number(name: str, default: float, *, unit: str = "", zero_ok: bool = True) -> float:
    """A finite number from ``$name`` (``default`` when unset): 0 or more, or more than 0 unless ``zero_ok``."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    what = f"number of {unit}" if unit else "number"
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a {what}") from None
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero_ok):
        bound = "0 or more" if zero_ok else "more than 0"
        raise ValueError(f"{name}={raw!r} must be a finite {what}, {bound}")
    return value


def env_int(name: str, default: int) -> int:
    """A whole number of at least 1 from ``$name`` (``default`` when unset)."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a whole number") from None
    if value <= 0:
        raise ValueError(f"{name}={raw!r} must be positive")
    return value


def _bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name}={raw!r} is not a boolean: use true or false")


@dataclass
class Settings:
    """Everything the runtime can be told; ``Settings.from_env()`` reads the environment."""

    model_dir: str = field(default_factory=_default_model_dir)
    default_model: str | None = None
    api_key_hashes: tuple[str, ...] = ()
    max_body_bytes: int = 6 * MiB
    max_batch: int = 64
    max_header_bytes: int = 16 * 1024  # API Gateway allows 10 KB; a little slack for proxies
    max_image_pixels: int = 40_000_000
    threads: int = field(default_factory=default_threads)
    # Dynamic batching (``_batcher.py``): requests for one model arriving within the delay share one
    # session.run of at most batch_max rows. 0 = off; always off on Lambda (one request per container).
    batch_delay_ms: float = 0.0
    batch_max: int = 32
    instances: int = 1  # onnxruntime sessions per model, each with its own threads
    workers: int = 1  # uvicorn worker processes (only to share the cores out)
    log_level: str = "INFO"
    request_timeout: float = 30.0
    # Run decode + inference in a worker thread so one server handles requests concurrently. The Lambda
    # handler turns it off: a container serves one request at a time, and the thread hop costs ~1 ms there.
    offload: bool = True
    # Operations (docs/runtime.md, "Metrics, tracing, reload and shutdown").
    metrics: bool = True  # GET /metrics (prometheus_client); the Lambda handler writes EMF lines instead
    metrics_public: bool = False  # /metrics without a key even when keys are set
    reload_interval: float = 0.0  # seconds between polls of the model source; 0 = never reload
    drain_delay: float = 0.0  # seconds readiness answers 503 after SIGTERM before the listener closes
    shutdown_timeout: float = 10.0  # then at most this long for accepted requests to finish

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        """Settings from ``ONNXFN_*`` variables; keyword overrides win (``None`` means "not given")."""
        env = os.environ
        hashes = tuple(
            h.strip().lower() for h in env.get("ONNXFN_API_KEY_HASHES", "").split(",") if h.strip()
        )
        settings = cls(
            model_dir=env.get("ONNXFN_MODEL_DIR") or _default_model_dir(),
            default_model=env.get("ONNXFN_DEFAULT_MODEL") or None,
            api_key_hashes=hashes,
            max_body_bytes=env_int("ONNXFN_MAX_BODY_BYTES", 6 * MiB),
            max_batch=env_int("ONNXFN_MAX_BATCH", 64),
            max_header_bytes=env_int("ONNXFN_MAX_HEADER_BYTES", 16 * 1024),
            max_image_pixels=env_int("ONNXFN_MAX_IMAGE_PIXELS", 40_000_000),
            threads=env_int("ONNXFN_THREADS", 0),  # 0 = not given: shared out below
            batch_max=env_int("ONNXFN_BATCH_MAX", 0),  # 0 = not given: min(32, max_batch)
            batch_delay_ms=env_number("ONNXFN_BATCH_DELAY_MS", 0.0),
            instances=env_int("ONNXFN_INSTANCES", 1),
            workers=env_int("ONNXFN_WORKERS", 1),
            log_level=(env.get("ONNXFN_LOG_LEVEL") or "INFO").upper(),
            request_timeout=float(env.get("ONNXFN_REQUEST_TIMEOUT") or 30.0),
            metrics=_bool("ONNXFN_METRICS", True),
            metrics_public=_bool("ONNXFN_METRICS_PUBLIC", False),
            reload_interval=env_number("ONNXFN_RELOAD_INTERVAL", 0.0, unit="seconds"),
            drain_delay=env_number("ONNXFN_DRAIN_DELAY", 0.0, unit="seconds"),
            shutdown_timeout=env_number("ONNXFN_SHUTDOWN_TIMEOUT", 10.0, unit="seconds"),
        )
        for key, value in overrides.items():
            if value is None:
                continue
            if not hasattr(settings, key):
                raise TypeError(f"unknown setting {key!r}")
            if key == "api_key_hashes" and isinstance(value, str):
                value = tuple(h.strip().lower() for h in value.split(",") if h.strip())
            setattr(settings, key, value)
        if not settings.threads:  # not ONNXFN_THREADS, --threads nor an override
            # A server runs requests side by side: one thread per run, a run per core (``runners``), measured
            # cheaper per request than all cores per run (docs/runtime.md, "Instances, workers and threads").
            # One request at a time (Lambda, Client.local): the cores shared out over workers × instances.
            settings.threads = (
                1 if settings.offload else threads_per_session(settings.workers, settings.instances)
            )
        if not settings.batch_max:
            settings.batch_max = min(32, settings.max_batch)
        settings.check()
        return settings

    @property
    def runners(self) -> int:
        """Requests a model runs at once on a server: one per ``threads`` cores (of this worker's share),
        at least one per session. Runner threads share the model's sessions (onnxruntime sessions are
        thread-safe), so a model is in memory ``instances`` times, not once per runner."""
        return max(self.instances, default_threads() // max(1, self.workers * self.threads))

    def check(self) -> None:
        """ValueError naming the setting when values contradict each other."""
        if self.batch_max > self.max_batch:
            raise ValueError(
                f"ONNXFN_BATCH_MAX={self.batch_max} is above ONNXFN_MAX_BATCH={self.max_batch}: "
                "a fused batch cannot be larger than the largest batch a request may send"
            )
        if self.batch_max < 1 or self.instances < 1 or self.threads < 1:
            raise ValueError("ONNXFN_BATCH_MAX, ONNXFN_INSTANCES and ONNXFN_THREADS must be positive")
        if not self.batch_delay_ms >= 0:
            raise ValueError(f"ONNXFN_BATCH_DELAY_MS={self.batch_delay_ms} must be zero or positive")
