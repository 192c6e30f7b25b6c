"""Reading answers: JSON bodies and predictions out of a ``Response``, or ``InvalidResponseError``."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from ._exceptions import InvalidResponseError, request_id_of
from ._transports import Response
from ._types import Prediction

__all__ = ["invalid", "json_of", "predictions_of"]


def invalid(resp: Response, message: str, body: bytes | None = None) -> InvalidResponseError:
    return InvalidResponseError(
        message,
        status=resp.status,
        request_id=request_id_of(resp.headers),
        body=resp.content if body is None else body,
        headers=resp.headers,
    )


def json_of(resp: Response) -> Any:
    """The JSON of a 2xx answer, or ``InvalidResponseError``."""
    try:
        return json.loads(resp.content)
    except ValueError:
        raise invalid(resp, f"{resp.status} answer is not JSON: {resp.content[:200]!r}") from None


def predictions_of(resp: Response, count: int) -> list[Prediction]:
    """``count`` predictions from a predict answer (classifier top-k or tensor ``outputs``)."""
    data = json_of(resp)
    request_id = request_id_of(resp.headers)
    rows = data.get("predictions", data.get("outputs")) if isinstance(data, dict) else None
    if not isinstance(rows, list) or len(rows) != count:
        raise invalid(resp, f"expected {count} predictions in the answer, got {resp.content[:200]!r}")
    model = data.get("model")
    version = None if data.get("version") is None else str(data["version"])
    if "predictions" in data:
        try:
            return [
                Prediction.from_scores(r, model=model, version=version, request_id=request_id) for r in rows
            ]
        except (KeyError, TypeError, ValueError) as exc:
            raise invalid(resp, f"unreadable predictions ({exc}): {resp.content[:200]!r}") from None
    return [
        Prediction(
            label=None, score=None, outputs=np.asarray(r), model=model, version=version, request_id=request_id
        )
        for r in rows
    ]
