"""Async HTTP transport over one ``aiohttp.ClientSession`` (keep-alive pool, no cookies kept).

Chosen over httpx2 by measurement (docs/client.md): a third of the client CPU per request and more
requests/s against the same server. Auth callables (``APIKeyAuth``, ``BearerAuth``, ``SigV4Auth``, or any
callable that sets headers on an object with ``method``, ``url``, ``headers``, ``body``) run on every
attempt, so SigV4 signs each anew.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from .._exceptions import APIConnectionError, APITimeoutError
from . import Request, Response, URLs

DEFAULT_CONNECT_TIMEOUT = 10.0


class _Prepared:
    """What an auth callable sees and changes: the attempt's method, full URL, headers and body."""

    __slots__ = ("body", "headers", "method", "url")

    def __init__(self, method: str, url: str, headers: dict[str, str], body: bytes | None) -> None:
        self.method, self.url, self.headers, self.body = method, url, headers, body


class AsyncHTTPTransport:
    """Sends requests to ``url`` (the base: ``https://…/prod``) over an ``aiohttp.ClientSession``,
    created on first use inside the running event loop."""

    def __init__(
        self,
        url: str,
        *,
        auth: Callable[[Any], Any] | None = None,
        pool_size: int = 10,
        verify: bool | str = True,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    ) -> None:
        try:
            import aiohttp
        except ImportError:
            raise ImportError("AsyncClient needs aiohttp: pip install 'onnxfn[client]'") from None
        self._aiohttp = aiohttp
        self.url = url.rstrip("/")
        self._urls = URLs(self.url)
        self.auth = auth
        self.verify = verify
        self.pool_size = pool_size
        self.connect_timeout = connect_timeout
        self._session: Any = None
        self._proxy: Any = None
        self._proxy_auth: Any = None
        self._netrc_auth: Any = None

    def _open(self) -> Any:
        aiohttp = self._aiohttp
        ssl: Any = True
        if isinstance(self.verify, str):
            import ssl as ssl_module

            ssl = ssl_module.create_default_context(cafile=self.verify)
        elif not self.verify:
            ssl = False
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, ssl=ssl, keepalive_timeout=30)
        # Proxy and netrc settings from the environment, read once for the base URL: aiohttp's
        # ``trust_env`` reads them again for every request, in two hops to a worker thread.
        self._proxy, self._proxy_auth, self._netrc_auth = _from_environment(self.url)
        self._session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=True,
            skip_auto_headers=("User-Agent", "Content-Type"),
            trust_env=False,
        )
        return self._session

    def url_for(self, request: Request) -> str:
        return self._urls(request)

    async def send(self, request: Request, timeout: float | None) -> Response:
        aiohttp = self._aiohttp
        session = self._session or self._open()
        url = self.url_for(request)
        headers = dict(request.headers)
        if self.auth is not None:
            prepared = _Prepared(request.method, url, headers, request.body)
            self.auth(prepared)
            headers = prepared.headers
        limit = aiohttp.ClientTimeout(
            total=timeout, connect=None if timeout is None else min(self.connect_timeout, timeout)
        )
        netrc = None  # ~/.netrc credentials when nothing else authenticates (as Client's requests does)
        if self._netrc_auth is not None and self.auth is None and not _has_authorization(headers):
            netrc = self._netrc_auth
        try:
            async with session.request(
                request.method,
                url,
                data=request.body,
                headers=headers,
                timeout=limit,
                allow_redirects=True,
                proxy=self._proxy,
                proxy_auth=self._proxy_auth,
                auth=netrc,
            ) as r:
                content = await r.read()
                return Response(r.status, {k.lower(): v for k, v in r.headers.items()}, content)
        except (asyncio.TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise APITimeoutError(f"no response from {url} within {timeout:.3g} s") from exc
        except aiohttp.ClientSSLError as exc:
            raise APIConnectionError(f"TLS error talking to {url}: {exc}", retryable=False) from exc
        except aiohttp.InvalidURL as exc:
            raise APIConnectionError(f"invalid URL {url}: {exc}", retryable=False) from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise APIConnectionError(f"connection to {url} failed: {_reason(exc)}") from exc

    def ensure_pool(self, size: int) -> None:
        """The connector has no limit: ``predict_batch`` bounds the requests in flight itself."""

    async def aclose(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    def close(self) -> None:
        """Synchronous close is not possible for aiohttp: use ``await aclose()``."""


def _has_authorization(headers: dict[str, str]) -> bool:
    return any(k.lower() == "authorization" for k in headers)


def _from_environment(url: str) -> tuple[Any, Any, Any]:
    """``(proxy, proxy_auth, netrc_auth)`` for ``url`` from ``HTTP(S)_PROXY``/``NO_PROXY`` and ``NETRC``/
    ``~/.netrc``, as aiohttp's ``trust_env=True`` would find them (and as ``requests`` does for Client)."""
    from aiohttp import helpers
    from yarl import URL

    target = URL(url)
    proxy: Any = None
    proxy_auth: Any = None
    try:
        proxy, proxy_auth = helpers.get_env_proxy_for_url(target)
    except LookupError:  # no proxy for this URL (none set, or NO_PROXY names it)
        pass
    netrc_auth: Any = None
    if target.host is not None:
        try:
            netrc_auth = helpers.basicauth_from_netrc(helpers.netrc_from_env(), target.host)
        except LookupError:
            pass
    return proxy, proxy_auth, netrc_auth


def _reason(exc: BaseException) -> str:
    """The useful text of an aiohttp/OS error: "connection refused" rather than "Connect call failed"."""
    inner = getattr(exc, "os_error", exc)
    if isinstance(inner, ConnectionRefusedError):
        return "connection refused"
    if isinstance(inner, ConnectionResetError):
        return "connection reset by peer"
    return (str(exc) or type(exc).__name__)[:300]
