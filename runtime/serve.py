"""``onnxfn serve``: the same app under uvicorn, on any machine.

Beyond the app itself this is where the server's life is managed: models loaded (and, with
``ONNXFN_RELOAD_INTERVAL``, reloaded) per worker; ``--workers N`` with one Prometheus multiprocess dir;
and a graceful stop: on SIGTERM readiness turns 503 at once (``ONNXFN_DRAIN_DELAY`` seconds during which
the listener still accepts, for load balancers to notice), then uvicorn stops accepting, finishes what it
accepted within ``ONNXFN_SHUTDOWN_TIMEOUT`` seconds, and the process exits 0.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import tempfile
import threading
from typing import Any

from ._settings import Settings

log = logging.getLogger("onnxfn.runtime")

__all__ = ["NoModelsError", "app_from_env", "serve"]


class NoModelsError(ValueError):
    """``onnxfn serve`` found no model it could serve (and reload is off): the reasons, one per model."""


def app_from_env() -> Any:
    """App factory for uvicorn (each ``--workers`` process builds its own): settings from ``ONNXFN_*``."""
    return build_app(Settings.from_env())


def build_app(settings: Settings) -> Any:
    """The app for ``settings`` with reload and graceful drain wired to uvicorn's lifespan and signals."""
    from ._app import create_app
    from ._logging import configure_logging

    configure_logging(settings.log_level)
    repository = load_repository(settings)
    app = create_app(settings.model_dir, settings=settings, repository=repository)
    return _Lifecycle(app, settings)


def load_repository(settings: Settings) -> Any:
    """The models of ``settings.model_dir``; ``NoModelsError`` when none loads and reload is off."""
    from ._repository import ModelRepository

    reload_on = settings.reload_interval > 0
    repository = ModelRepository.load(
        settings.model_dir,
        threads=settings.threads,
        max_image_pixels=settings.max_image_pixels,
        default=settings.default_model,
        allow_empty=reload_on,
        instances=settings.instances,
    )
    if not repository.models and not reload_on:
        reasons = "; ".join(f"{name}: {why}" for name, why in sorted(repository.problems().items()))
        raise NoModelsError(
            f"no model could be loaded from {settings.model_dir} ({reasons or 'no model files'}); "
            "fix them (`onnxfn manifest DIR --verify` checks a directory), or start with "
            "--reload-interval SECONDS to serve once models arrive"
        )
    log.info(
        json.dumps(
            {
                "event": "models_ready",
                "loaded": sorted(repository.models),
                "not_loaded": repository.problems(),
                "default": repository.default,
            }
        )
    )
    return repository


class _Lifecycle:
    """ASGI wrapper: at lifespan startup, the reloader and the drain-on-SIGTERM hook; at shutdown, cleanup."""

    def __init__(self, app: Any, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.reloader: Any = None

    def __getattr__(self, name: str) -> Any:  # app.state, app.routes, ... for whoever holds this
        return getattr(self.app, name)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def lifespan_receive() -> dict:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.startup()
            elif message["type"] == "lifespan.shutdown":
                self.shutdown()
            return message

        await self.app(scope, lifespan_receive, send)

    def startup(self) -> None:
        _drain_on_signals(self.app.state.dataplane, self.settings.drain_delay)
        if self.settings.reload_interval > 0:
            from ._reload import Reloader

            self.reloader = Reloader(self.app.state.repository, self.settings.reload_interval)
            self.reloader.start()

    def shutdown(self) -> None:
        if self.reloader is not None:
            self.reloader.stop()
        metrics = getattr(self.app.state.dataplane, "metrics", None)
        if metrics is not None:
            metrics.mark_dead()


def _drain_on_signals(dataplane: Any, delay: float) -> None:
    """Wrap uvicorn's SIGTERM/SIGINT handlers: readiness 503 first, uvicorn's graceful stop after ``delay``."""
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(sig)
        if not callable(previous):
            continue

        def handler(signum: int, frame: Any, previous: Any = previous) -> None:
            first = not dataplane.draining
            dataplane.draining = True
            if first:
                log.info(
                    json.dumps({"event": "draining", "signal": signal.Signals(signum).name, "delay_s": delay})
                )
            if first and delay > 0 and signum == signal.SIGTERM:
                timer = threading.Timer(delay, previous, (signum, frame))
                timer.daemon = True
                timer.start()
            else:
                previous(signum, frame)

        signal.signal(sig, handler)


def _run_workers(workers: int, options: dict[str, Any]) -> None:
    """``uvicorn.run(..., workers=N)``, with a supervisor that lets go of the listening socket on SIGTERM."""
    from uvicorn import Config
    from uvicorn.supervisors import Multiprocess

    class Supervisor(Multiprocess):
        """uvicorn's supervisor, except that on SIGTERM/SIGINT it closes its own copy of the listening
        socket: the workers keep accepting on theirs through the drain delay, and once they close them new
        connections are refused at once, instead of queueing on a socket that nobody accepts from until the
        supervisor exits."""

        def _release(self) -> None:
            for sock in self.sockets:
                sock.close()

        def handle_term(self) -> None:
            self._release()
            super().handle_term()

        def handle_int(self) -> None:
            self._release()
            super().handle_int()

    config = Config("onnxfn.runtime.serve:app_from_env", factory=True, workers=workers, **options)
    Supervisor(config, sockets=[_tcp_socket(config.bind_socket())]).run()


def _exit_zero(signum: int, frame: Any) -> None:
    """After uvicorn's graceful stop it re-raises the signal it caught: a SIGTERM stop is a clean exit."""
    raise SystemExit(0)


def _tcp_socket(sock: socket.socket) -> socket.socket:
    """``sock`` as a socket that says it is TCP, so asyncio sets TCP_NODELAY on every accepted connection.

    uvicorn's ``Config.bind_socket`` (used by ``--workers N``) creates its listener with ``proto`` 0;
    accepted sockets inherit it, asyncio only disables Nagle's algorithm when ``proto`` is IPPROTO_TCP,
    and every answer on a kept-alive connection then waits ~40 ms for the client's delayed ACK
    (Kludex/uvicorn#3149). The one-worker path lets asyncio build the listener and is not affected.
    """
    if sock.family not in (socket.AF_INET, socket.AF_INET6) or sock.proto == socket.IPPROTO_TCP:
        return sock
    fixed = socket.socket(sock.family, sock.type, socket.IPPROTO_TCP, fileno=sock.detach())
    fixed.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # Linux copies it to accepted sockets too
    fixed.set_inheritable(True)
    return fixed


def serve(
    source: str | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    workers: int = 1,
    log_level: str = "info",
    **settings: Any,
) -> None:
    """Load ``source`` (default ``ONNXFN_MODEL_DIR``, else ``models``) and serve it until SIGTERM/SIGINT.

    ``settings`` are ``Settings`` fields (``threads``, ``batch_delay_ms``, ``instances``, …); ``None`` = the
    environment's or the default. Without ``threads``, the cores are shared out over workers × instances.
    """
    import uvicorn

    if source is not None:
        os.environ["ONNXFN_MODEL_DIR"] = str(source)
    os.environ["ONNXFN_WORKERS"] = str(max(1, workers))
    for key, value in settings.items():
        if value is not None:
            os.environ[f"ONNXFN_{key.upper()}"] = str(value)
    config = Settings.from_env()  # contradictory settings fail here, once, not in every worker
    common = {
        "host": host,
        "port": port,
        "log_level": log_level,
        "access_log": False,  # onnxfn logs one JSON line per request itself
        "timeout_graceful_shutdown": config.shutdown_timeout,  # type: ignore[dict-item]
        "server_header": False,
    }
    signal.signal(signal.SIGTERM, _exit_zero)
    if workers <= 1:
        uvicorn.run(build_app(config), **common)
        return
    # Fail here, once, rather than in every worker: check that something loads (the workers load their own).
    if config.reload_interval <= 0:
        from ._logging import configure_logging

        configure_logging(config.log_level)
        load_repository(config)
    own_dir = None
    if config.metrics and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        own_dir = tempfile.mkdtemp(prefix="onnxfn-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = own_dir  # the workers inherit it
    try:
        _run_workers(workers, common)
    finally:
        if own_dir is not None:
            shutil.rmtree(own_dir, ignore_errors=True)
            os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
