"""``onnxfn serve``: the same app under uvicorn, on any machine."""

from __future__ import annotations

import os
from typing import Any

from ._settings import Settings


def app_from_env() -> Any:
    """App factory for uvicorn workers (``--workers`` > 1 re-imports the app in each process)."""
    from ._app import create_app

    settings = Settings.from_env()
    return create_app(settings.model_dir, settings=settings)


def serve(
    source: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    workers: int = 1,
    log_level: str = "info",
    **settings: Any,
) -> None:
    """Load ``source`` and serve it until SIGINT/SIGTERM (uvicorn drains open requests first)."""
    import uvicorn

    os.environ["ONNXFN_MODEL_DIR"] = str(source)
    for key, value in settings.items():
        if value is not None:
            os.environ[f"ONNXFN_{key.upper()}"] = str(value)
    common = {
        "host": host,
        "port": port,
        "log_level": log_level,
        "access_log": False,  # onnxfn logs one JSON line per request itself
        "timeout_graceful_shutdown": 10,
        "server_header": False,
    }
    if workers > 1:
        uvicorn.run("onnxfn.runtime.serve:app_from_env", factory=True, workers=workers, **common)
    else:
        uvicorn.run(app_from_env(), **common)
