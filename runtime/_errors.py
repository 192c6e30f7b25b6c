"""Errors the runtime answers with: each maps to one HTTP status and a JSON body ``{"error": ...}``.

APIError
├── BadRequest            400  malformed, undecodable, wrong shape/dtype, non-finite numbers
├── Unauthorized          401  missing or wrong API key
├── NotFound              404  unknown model, version or route
├── MethodNotAllowed      405  a route's path with another method
├── PayloadTooLarge       413  body or batch above the limit
├── UnsupportedMediaType  415  a body the API cannot read
└── NotReady              503  no model loaded
"""

from __future__ import annotations


class APIError(Exception):
    """An error with an HTTP status and a message that says what is wrong and how to fix it."""

    status = 500

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


class BadRequest(APIError, ValueError):
    """400: malformed, undecodable, wrong shape or dtype, non-finite numbers."""

    status = 400


class Unauthorized(APIError):
    """401: missing or wrong API key."""

    status = 401


class NotFound(APIError, LookupError):
    """404: unknown model, version or route."""

    status = 404


class MethodNotAllowed(APIError):
    """405: the path exists, with another method (``allow`` names it)."""

    status = 405


class PayloadTooLarge(APIError):
    """413: body or batch above the limit."""

    status = 413


class UnsupportedMediaType(APIError):
    """415: a body the API cannot read."""

    status = 415


class HeadersTooLarge(APIError):
    """431: request headers above the limit."""

    status = 431


class NotReady(APIError):
    """503: no model loaded (yet)."""

    status = 503
