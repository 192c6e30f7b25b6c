"""Errors the client raises. Catch ``OnnxfnError`` for all of them.

    OnnxfnError
    ├── APIError                       the server (or a gateway in front of it) answered with an error
    │   ├── BadRequestError            400, 405, 415, 422: the request is wrong; never retried
    │   ├── AuthenticationError        401: missing or wrong API key / credentials; never retried
    │   │   └── PermissionDeniedError  403: authenticated but not allowed (IAM policy, API Gateway)
    │   ├── NotFoundError              404: unknown model, version or route
    │   ├── PayloadTooLargeError       413 (API Gateway, Lambda or onnxfn), or raised before sending
    │   │                              when one item alone is larger than ``max_bytes``
    │   ├── RateLimitError             429, once retries are used up (or Retry-After is above the cap)
    │   ├── ServerError                5xx (502/503/504 once retries are used up)
    │   └── InvalidResponseError       a 2xx answer the client cannot read
    ├── APIConnectionError             no answer: DNS failure, refused, reset (after retries)
    │   └── APITimeoutError            no answer in time: the attempt timeout or the overall deadline
    └── BatchError                     ``predict_batch`` failed; ``.results`` keeps what succeeded,
                                       ``.errors`` what failed, ``__cause__`` the first failure

Every ``APIError`` carries ``status``, ``request_id`` (the server's ``x-request-id``, or API Gateway's),
``error`` (the server's own text), ``idempotency_key`` and ``attempts``; its message says all of them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

__all__ = [
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "BatchError",
    "InvalidResponseError",
    "NotFoundError",
    "OnnxfnError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "RateLimitError",
    "ServerError",
    "error_from_response",
]

# Headers that carry a request id, ours first, then API Gateway's and Lambda's.
REQUEST_ID_HEADERS = (
    "x-request-id",
    "x-amzn-requestid",
    "x-amzn-request-id",
    "apigw-requestid",
    "x-amz-apigw-id",
)


class OnnxfnError(Exception):
    """Base class of every error the onnxfn client raises."""


class APIError(OnnxfnError):
    """An error answer (status ≥ 400) from the server or a gateway in front of it."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        request_id: str | None = None,
        error: str | None = None,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
        attempts: int = 1,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.request_id = request_id
        self.error = error if error is not None else message
        self.body = body
        self.headers = dict(headers or {})
        self.idempotency_key = idempotency_key
        self.attempts = attempts

    def __reduce__(self) -> Any:  # keyword-only arguments: pickle through __dict__
        return (_rebuild, (type(self), self.message, self.__dict__))


class BadRequestError(APIError, ValueError):
    """400/405/415/422: malformed, undecodable, wrong shape or dtype. Fix the request; never retried."""


class AuthenticationError(APIError):
    """401: the API key (or token, or AWS credentials) is missing or wrong."""


class PermissionDeniedError(AuthenticationError):
    """403: the caller is known but not allowed (IAM policy, API Gateway resource policy, WAF)."""


class NotFoundError(APIError, LookupError):
    """404: unknown model, model version or route (check the URL's stage prefix)."""


class PayloadTooLargeError(APIError):
    """413: the body is above a limit (Lambda 6 MB, API Gateway 10 MB, onnxfn's ONNXFN_MAX_BODY_BYTES)."""


class RateLimitError(APIError):
    """429: throttled, and retries did not get through (or Retry-After asked for too long a wait)."""


class ServerError(APIError):
    """5xx: the server or a gateway failed (502/503/504 only after retries)."""


class InvalidResponseError(APIError):
    """A success status with a body the client cannot read (not JSON, missing fields)."""


class APIConnectionError(OnnxfnError):
    """No answer at all: DNS failure, connection refused or reset, TLS failure (after retries)."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool = True,
        idempotency_key: str | None = None,
        attempts: int = 1,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.idempotency_key = idempotency_key
        self.attempts = attempts

    def __reduce__(self) -> Any:
        return (_rebuild, (type(self), self.message, self.__dict__))


class APITimeoutError(APIConnectionError):
    """No answer within the attempt timeout, or the overall deadline passed."""


class BatchError(OnnxfnError):
    """``predict_batch`` (without ``return_exceptions``) stopped at a failed item, and kept the rest.

    ``results`` maps input index → ``Prediction`` for every item that finished; ``errors`` maps index →
    exception for every item that failed (``error`` is the first, in input order, also ``__cause__``;
    ``index`` its position); items in neither were not sent. ``count`` is how many items were read.
    Resend only what is missing: ``[x for i, x in enumerate(xs) if i not in e.results]``.
    """

    def __init__(
        self,
        message: str,
        *,
        results: dict[int, Any],
        errors: dict[int, BaseException],
        count: int,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.results = results
        self.errors = errors
        self.count = count
        self.index = min(errors) if errors else None
        self.error = errors[self.index] if self.index is not None else None

    @classmethod
    def from_run(cls, results: dict[int, Any], errors: dict[int, BaseException], count: int) -> BatchError:
        """The error for a batch of ``count`` items read, with these finished and failed items."""
        index = min(errors)
        first = errors[index]
        unsent = count - len(results) - len(errors)
        message = (
            f"predict_batch failed at item {index} ({type(first).__name__}: {first}); "
            f"{len(results):,} of {count:,} items read finished (in .results), {len(errors):,} failed "
            f"(in .errors)"
            + (f", {unsent:,} were not sent" if unsent else "")
            + " [resend the items missing from .results, or pass return_exceptions=True]"
        )
        return cls(message, results=results, errors=errors, count=count)

    def __reduce__(self) -> Any:
        return (_rebuild, (type(self), self.message, self.__dict__))


def _rebuild(cls: type[Exception], message: str, state: dict[str, Any]) -> Exception:
    exc = cls.__new__(cls)
    Exception.__init__(exc, message)
    exc.__dict__.update(state)
    return exc


_BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    405: BadRequestError,
    413: PayloadTooLargeError,
    415: BadRequestError,
    422: BadRequestError,
    429: RateLimitError,
}

_HINTS: dict[type[APIError], str] = {
    PayloadTooLargeError: "send fewer or smaller items per request (lower max_bytes or batch_size)",
    AuthenticationError: "pass api_key= or set ONNXFN_API_KEY",
    PermissionDeniedError: "check the IAM policy, the API key's usage plan, or the SigV4 region and service",
}


def error_class(status: int) -> type[APIError]:
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    if status >= 500:
        return ServerError
    return APIError


def server_error_text(body: bytes, content_type: str = "") -> str:
    """The error text in a body: onnxfn's/Triton's ``{"error"}``, API Gateway's/Lambda's ``{"message"}``,
    FastAPI's ``{"detail"}``, or the text itself."""
    text = body.decode("utf-8", "replace").strip() if body else ""
    if text[:1] in ("{", "["):
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if isinstance(data, dict):
            for key in ("error", "message", "Message", "detail", "errorMessage"):
                value = data.get(key)
                if isinstance(value, dict):
                    value = value.get("message") or json.dumps(value)
                if value:
                    return value if isinstance(value, str) else json.dumps(value)
    if "html" in content_type.lower():
        return text[:200]
    return text[:1000]


def request_id_of(headers: Mapping[str, str], body: bytes = b"") -> str | None:
    """The request id a server or gateway gave this answer (headers first, then the JSON body)."""
    for name in REQUEST_ID_HEADERS:
        value = headers.get(name)
        if value:
            return value
    if body[:1] == b"{":
        try:
            data = json.loads(body)
        except ValueError:
            return None
        request_id = data.get("request_id") if isinstance(data, dict) else None
        if isinstance(request_id, str):
            return request_id
    return None


def error_from_response(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    method: str = "",
    url: str = "",
    idempotency_key: str | None = None,
    attempts: int = 1,
    note: str = "",
) -> APIError:
    """The typed error for an error answer; ``headers`` keys are lower case."""
    cls = error_class(status)
    text = server_error_text(body, headers.get("content-type", ""))
    request_id = request_id_of(headers, body)
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    parts = [f"{status} {phrase}"]
    if method or url:
        parts.append(f" from {method} {url}".rstrip())
    parts.append(f": {text or '(empty body)'}")
    if request_id:
        parts.append(f" (request id {request_id})")
    if attempts > 1:
        parts.append(f" after {attempts} attempts")
    if note:
        parts.append(f"; {note}")
    hint = _HINTS.get(cls)
    if hint and hint not in text:
        parts.append(f" [{hint}]")
    return cls(
        "".join(parts),
        status=status,
        request_id=request_id,
        error=text,
        body=body,
        headers=headers,
        idempotency_key=idempotency_key,
        attempts=attempts,
    )
