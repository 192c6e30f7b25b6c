"""Transports carry one attempt of a request and bring back the answer, whatever its status.

``HTTPTransport`` (``http.py``) talks to a server over a pooled ``requests.Session``;
``LocalTransport`` (``local.py``) answers the same routes in process with ``onnxfn.runtime``;
``AsyncHTTPTransport`` (``aio.py``) is the ``AsyncClient``'s, over ``aiohttp``.
The clients above them own everything else (retries, errors, encoding), so all share one code path.
Private: the public API is ``Client``/``AsyncClient``, not these.
A transport raises ``APIConnectionError``/``APITimeoutError`` when there is no answer at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import quote, urlencode

__all__ = ["AsyncTransport", "Request", "Response", "Transport", "URLs"]


@dataclass
class Request:
    """One request: ``path`` is relative to the base URL (``/predict``); header names are lower case."""

    method: str
    path: str
    params: dict[str, str] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None


@dataclass
class Response:
    """An answer: ``headers`` has lower-case names."""

    status: int
    headers: dict[str, str]
    content: bytes


class Transport(Protocol):
    url: str

    def send(self, request: Request, timeout: float | None) -> Response:
        """One attempt; ``timeout`` bounds connecting and each read (None: no limit)."""
        ...

    def url_for(self, request: Request) -> str:
        """The full URL of ``request`` (for messages and logs)."""
        ...

    def ensure_pool(self, size: int) -> None:
        """Keep at least ``size`` connections for concurrent requests."""
        ...

    def close(self) -> None: ...


class AsyncTransport(Protocol):
    url: str

    async def send(self, request: Request, timeout: float | None) -> Response:
        """One attempt, as ``Transport.send``."""
        ...

    def url_for(self, request: Request) -> str: ...

    def ensure_pool(self, size: int) -> None: ...

    async def aclose(self) -> None: ...


class URLs:
    """Full URLs of requests under one base URL (paths quoted once and cached)."""

    def __init__(self, base: str) -> None:
        self.base = base.rstrip("/")
        self._paths: dict[str, str] = {}

    def __call__(self, request: Request) -> str:
        url = self._paths.get(request.path)
        if url is None:
            url = self.base + quote(request.path, safe="/:@!$&'()*+,;=-._~")
            if len(self._paths) < 1024:
                self._paths[request.path] = url
        if request.params:
            url += "?" + urlencode(request.params)
        return url
