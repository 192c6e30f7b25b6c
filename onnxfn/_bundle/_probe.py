"""The cold-path probe: run by ``cold_path_modules`` as ``python -m onnxfn._bundle._probe [MODEL_DIR]``.

Run by this environment's Python (its serve dependencies are the versions the bundle pins): it starts the
Lambda app as a cold start does, sends it the first requests a deployment sees (health, metadata, an image
and a text prediction, each model's metadata) through Mangum with HTTP API v2 events, then prints the sorted
names of every imported module as one JSON line. Only those modules get ``.pyc`` in the bundle.
"""

from __future__ import annotations

import base64
import io
import json
import sys


def event(
    method: str, path: str, body: str | None = None, content_type: str | None = None, binary: bool = False
) -> dict:
    """A minimal API Gateway HTTP API (payload 2.0) event."""
    http = {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "x"}
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {"host": "localhost", **({"content-type": content_type} if content_type else {})},
        "requestContext": {
            "http": http,
            "stage": "$default",
            "requestId": "x",
            "accountId": "x",
            "apiId": "x",
            "domainName": "localhost",
            "routeKey": "$default",
            "timeEpoch": 0,
        },
        "body": body,
        "isBase64Encoded": binary,
    }


def main(model_dir: str) -> list[str]:
    """Start the app on ``model_dir`` ('' = no models), send the first requests; the modules imported."""
    import onnxruntime  # noqa: F401  (what every cold start imports)
    from mangum import Mangum
    from PIL import Image, WebPImagePlugin  # noqa: F401

    from onnxfn.runtime._app import create_app
    from onnxfn.runtime._repository import ModelRepository
    from onnxfn.runtime._settings import Settings

    repository = ModelRepository.load(model_dir) if model_dir else ModelRepository({})
    app = create_app(repository=repository, settings=Settings(log_level="ERROR"))
    handler = Mangum(app, lifespan="off")
    png = io.BytesIO()
    Image.new("L", (8, 8)).save(png, format="PNG")
    image = base64.b64encode(png.getvalue()).decode()
    events = [
        event("GET", "/v2/health/ready"),
        event("GET", "/v2"),
        event("POST", "/predict", image, "application/octet-stream", True),
        event("POST", "/predict", json.dumps({"instances": ["text"]}), "application/json"),
    ]
    events += [event("GET", f"/v2/models/{name}") for name in repository.models]
    for e in events:
        handler(e, None)
    Image.preinit()
    return sorted(sys.modules)


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1] if len(sys.argv) > 1 else "")))
