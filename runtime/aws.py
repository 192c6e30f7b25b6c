"""AWS Lambda entry point: ``onnxfn.runtime.aws.handler``.

Models load here, at import (the init phase, once per container): Mangum runs lifespan on every
invocation, so lifespan is off. Works for API Gateway REST (v1), HTTP API (v2), Function URLs and ALB.
"""

from __future__ import annotations

import os

# pydantic (under FastAPI) scans every installed distribution for plugins on first use: 40-80 ms of a
# cold start in a fat environment, for plugins a Lambda handler never uses. A user's own setting wins.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

from mangum import Mangum

from ._app import create_app
from ._settings import Settings

# One request per container: no worker-thread hop, no batching, one session (whatever the environment says).
settings = Settings.from_env(offload=False, batch_delay_ms=0.0, instances=1, workers=1)
app = create_app(settings.model_dir, settings=settings)
for _model in app.state.repository.models.values():
    _model.warmup()  # in the init phase, not on the first request
handler = Mangum(app, lifespan="off")
