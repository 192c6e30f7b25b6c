"""``onnxfn serve``: the same app under uvicorn, on any machine."""

from __future__ import annotations

import os
import socket
from typing import Any

from ._settings import Settings


def app_from_env() -> Any:
    """App factory for uvicorn workers (``--workers`` > 1 re-imports the app in each process)."""
    from ._app import create_app

    settings = Settings.from_env()
    return create_app(settings.model_dir, settings=settings)


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


def _run_workers(app: str, workers: int, **options: Any) -> None:
    """``uvicorn.run(app, workers=N)``, but on a listening socket whose connections get TCP_NODELAY."""
    from uvicorn import Config
    from uvicorn.supervisors import Multiprocess

    config = Config(app, factory=True, workers=workers, **options)
    sock = _tcp_socket(config.bind_socket())
    try:
        Multiprocess(config, sockets=[sock]).run()
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()


def serve(
    source: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    workers: int = 1,
    log_level: str = "info",
    **settings: Any,
) -> None:
    """Load ``source`` and serve it until SIGINT/SIGTERM (uvicorn drains open requests first).

    ``settings`` are ``Settings`` fields (``threads``, ``batch_delay_ms``, ``instances``, …); ``None`` = the
    environment's or the default. Without ``threads``, the cores are shared out over workers × instances.
    """
    import uvicorn

    os.environ["ONNXFN_MODEL_DIR"] = str(source)
    os.environ["ONNXFN_WORKERS"] = str(max(1, workers))
    for key, value in settings.items():
        if value is not None:
            os.environ[f"ONNXFN_{key.upper()}"] = str(value)
    Settings.from_env()  # contradictory settings fail here, once, not in every worker
    common = {
        "host": host,
        "port": port,
        "log_level": log_level,
        "access_log": False,  # onnxfn logs one JSON line per request itself
        "timeout_graceful_shutdown": 10,
        "server_header": False,
    }
    if workers > 1:
        _run_workers("onnxfn.runtime.serve:app_from_env", workers, **common)
    else:
        uvicorn.run(app_from_env(), **common)
