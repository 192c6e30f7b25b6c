"""AWS Lambda entry point: ``onnxfn.runtime.aws.handler``.

Models load here, at import (the init phase, once per container): Mangum runs lifespan on every
invocation, so lifespan is off. Works for API Gateway REST (v1), HTTP API (v2), Function URLs and ALB.
"""

from __future__ import annotations

import os
import time

_INIT_START = time.perf_counter()  # for the EMF line's init_duration (runtime/_emf.py)

# pydantic (under FastAPI) scans every installed distribution for plugins on first use: 40-80 ms of a
# cold start in a fat environment, for plugins a Lambda handler never uses. A user's own setting wins.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

from mangum import Mangum  # noqa: E402 (after the clock and the env var above)

from ._app import create_app  # noqa: E402
from ._emf import instrument  # noqa: E402
from ._settings import Settings  # noqa: E402

# No Prometheus on Lambda (one container per request, nothing scrapes it): one EMF log line per invocation.
settings = Settings.from_env(offload=False, metrics=False)
app = create_app(settings.model_dir, settings=settings)
for _model in app.state.repository.models.values():
    _model.warmup()  # in the init phase, not on the first request
handler = instrument(Mangum(app, lifespan="off"), app.state.request_hooks, _INIT_START)
