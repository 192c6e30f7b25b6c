"""Invoke ``onnxfn.runtime.aws.handler`` with API Gateway HTTP API (v2) events, in a fresh interpreter.

Run as a script: ``python -I -S lambda_probe.py BUNDLE_DIR EVENTS.json`` puts only BUNDLE_DIR (plus the
standard library) on ``sys.path``, like ``/var/task`` on Lambda; ``BUNDLE_DIR`` = ``-`` imports onnxfn from
the installed environment instead (the baseline). Prints one JSON line per event (the Lambda response),
then a JSON summary: where each module came from, whether TensorFlow was imported, timings.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import time

T0 = time.perf_counter()


def http_api_event(
    method: str, path: str, body: bytes | str | None = None, headers: dict | None = None
) -> dict:
    """An API Gateway HTTP API payload-2.0 event, as Lambda receives it (binary bodies base64-encoded)."""
    headers = {"host": "abc123.execute-api.us-east-1.amazonaws.com", "user-agent": "probe", **(headers or {})}
    event = {
        "version": "2.0",
        "routeKey": f"{method} {path}",
        "rawPath": path,
        "rawQueryString": "",
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc123",
            "domainName": headers["host"],
            "domainPrefix": "abc123",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": "probe",
            },
            "requestId": "probe-1",
            "routeKey": f"{method} {path}",
            "stage": "$default",
            "time": "01/Jan/2026:00:00:00 +0000",
            "timeEpoch": 1767225600000,
        },
        "isBase64Encoded": False,
    }
    if body is not None:
        if isinstance(body, bytes):
            event["body"] = base64.b64encode(body).decode()
            event["isBase64Encoded"] = True
        else:
            event["body"] = body
    return event


class _Context:
    function_name = "onnxfn-probe"
    memory_limit_in_mb = 1769
    aws_request_id = "probe"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:onnxfn-probe"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 28_000


def main(bundle: str, events_file: str) -> None:
    if bundle != "-":  # BUNDLE[:RUNTIME]: like /var/task then /var/runtime (where Lambda keeps boto3)
        stdlib = [p for p in sys.path if p and "site-packages" not in p and "dist-packages" not in p]
        sys.path[:] = [*bundle.split(os.pathsep), *stdlib]
    with open(events_file) as f:
        events = json.load(f)
    t_import = time.perf_counter()
    from onnxfn.runtime.aws import handler

    t_imported = time.perf_counter()
    firsts = []
    for event in events:
        response = handler(event, _Context())
        firsts.append(time.perf_counter())
        print(json.dumps(response), flush=True)
    modules = {
        name: getattr(module, "__file__", None) or ""
        for name, module in list(sys.modules.items())
        if name.split(".")[0] in ("onnxfn", "onnxruntime", "numpy", "fastapi", "pydantic", "PIL", "mangum")
    }
    summary = {
        "summary": True,
        "python": sys.version.split()[0],
        "sys_path": sys.path,
        "modules": modules,
        "tensorflow": any(m.split(".")[0] in ("tensorflow", "keras", "tf2onnx") for m in sys.modules),
        "import_s": t_imported - t_import,
        "startup_s": t_import - T0,
        "first_answer_s": (firsts[0] - T0) if firsts else None,
    }
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
