"""AWS Lambda entry point: ``onnxfn.runtime.aws.handler``.

Models load here, at import (the init phase, once per container): Mangum runs lifespan on every
invocation, so lifespan is off. Works for API Gateway REST (v1), HTTP API (v2), Function URLs and ALB.

SnapStart (``snapStart: true`` in serverless.yml): Lambda snapshots the initialised environment and
resumes copies of it. :func:`before_snapshot` runs one request through the whole app first, so the
snapshot holds warm code paths too; :func:`after_restore` re-seeds what would otherwise be identical in
every copy. Both are registered with ``snapshot_restore_py`` when the runtime has it (only on Lambda).
"""

from __future__ import annotations

import os
import time

_INIT_START = time.perf_counter()  # for the EMF line's init_duration (runtime/_emf.py)

# pydantic (under FastAPI) scans every installed distribution for plugins on first use: 40-80 ms of a
# cold start in a fat environment, for plugins a Lambda handler never uses. A user's own setting wins.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

import contextlib  # noqa: E402 (after the clock and the env var above)
import sys  # noqa: E402
import types  # noqa: E402
from collections.abc import Iterator  # noqa: E402

from mangum import Mangum  # noqa: E402

from ._emf import instrument  # noqa: E402
from ._settings import Settings  # noqa: E402

__all__ = ["after_restore", "app", "before_snapshot", "handler"]


@contextlib.contextmanager
def _lean_fastapi() -> Iterator[None]:
    """Import FastAPI and build the app without two costs a Lambda cold start pays for nothing.

    - pydantic builds the validators of every model at class creation: FastAPI defines ~60 OpenAPI models
      at import that only ``/openapi.json`` uses. ``defer_build`` (a documented pydantic setting) builds
      each on first use instead; models defined after this block are not affected.
    - FastAPI asks of every endpoint parameter whether it is a pydantic v1 model, importing the whole
      ``pydantic.v1`` package to find out. onnxfn's parameters are ``str``: while the routes are built,
      a stand-in ``pydantic.v1`` whose ``BaseModel`` nothing subclasses answers "no"; the real package
      stays importable afterwards.
    """
    from pydantic import BaseModel

    had_v1 = "pydantic.v1" in sys.modules
    if not had_v1:
        stand_in = types.ModuleType("pydantic.v1")
        stand_in.BaseModel = type("BaseModel", (), {})  # type: ignore[attr-defined]
        sys.modules["pydantic.v1"] = stand_in
    deferred = "defer_build" not in BaseModel.model_config
    if deferred:
        BaseModel.model_config["defer_build"] = True
    try:
        yield
    finally:
        if deferred:
            BaseModel.model_config.pop("defer_build", None)
        if not had_v1 and sys.modules.get("pydantic.v1") is stand_in:
            del sys.modules["pydantic.v1"]


# One request per container: no worker-thread hop, no batching, one session (whatever the environment says).
# No Prometheus on Lambda (one container per request, nothing scrapes it): one EMF log line per invocation.
settings = Settings.from_env(offload=False, metrics=False, batch_delay_ms=0.0, instances=1, workers=1)
with _lean_fastapi():
    from ._app import create_app

    app = create_app(settings.model_dir, settings=settings)
for _model in app.state.repository.models.values():
    _model.warmup()  # in the init phase, not on the first request
handler = instrument(Mangum(app, lifespan="off"), app.state.request_hooks, _INIT_START)


def before_snapshot() -> None:
    """SnapStart, before the snapshot: models are loaded and warm (import did it); also warm the app.

    One metadata request per model goes through Mangum, the middleware, routing and the data plane, so
    their lazy first-call work is in the snapshot instead of in the first request of every copy. It skips
    the EMF wrapper: no metric line for it, and each restored copy's first invocation still counts as cold.
    """
    mangum = handler.__wrapped__  # type: ignore[attr-defined]
    for name in app.state.repository.models:
        path = f"/v2/models/{name}"
        mangum(
            {
                "version": "2.0",
                "routeKey": "$default",
                "rawPath": path,
                "rawQueryString": "",
                "headers": {"host": "snapshot.local"},
                "requestContext": {
                    "http": {"method": "GET", "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1"},
                    "stage": "$default",
                },
                "isBase64Encoded": False,
            },
            None,
        )


def after_restore() -> None:
    """SnapStart, in each restored copy: re-seed the random generators the snapshot froze.

    Request ids (``os.urandom``) and API keys (``secrets``) read the kernel's entropy on every call and need
    nothing; the ``random`` module and numpy's global generator would repeat the same sequence in every
    copy. Nothing in the runtime keeps wall-clock time from the init phase.
    """
    import random
    import sys

    random.seed()
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        numpy.random.seed()


try:  # present in Lambda's Python runtimes; elsewhere the hooks are plain functions
    from snapshot_restore_py import register_after_restore, register_before_snapshot
except ImportError:
    pass
else:
    register_before_snapshot(before_snapshot)
    register_after_restore(after_restore)
