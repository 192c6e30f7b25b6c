"""The runtime's logging: one JSON line per event on stderr, for its own loggers only."""

from __future__ import annotations

import json
import logging
import os

RUNTIME_LOGGERS = ("onnxfn.runtime", "onnxfn.access")


def configure_logging(level: str = "INFO") -> None:
    """One JSON line per event on stderr for the runtime's own loggers (set up once).

    They do not propagate: the Lambda runtime puts a handler on the root logger, which would print each
    line twice. Other ``onnxfn.*`` loggers (the client's, the converter's) are left to the application.
    """
    for name in RUNTIME_LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(level if level in ("DEBUG", "INFO", "WARNING", "ERROR") else "INFO")
        if not any(getattr(h, "_onnxfn", False) for h in logger.handlers):
            handler = logging.StreamHandler()
            handler.setFormatter(_JsonFormatter())
            handler._onnxfn = True  # type: ignore[attr-defined]
            logger.addHandler(handler)
            logger.propagate = False


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        try:
            payload = json.loads(message)
            if not isinstance(payload, dict):
                payload = {"message": message}
        except ValueError:
            payload = {"message": message}
        out = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            **payload,
        }
        xray = os.environ.get("_X_AMZN_TRACE_ID")  # set by Lambda for each invocation
        if xray:
            from ._tracing import xray_trace_id

            out["xray_trace_id"] = xray_trace_id()
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out)
