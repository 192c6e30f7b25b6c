"""HTTP transport over one pooled ``requests.Session`` (keep-alive, connection pool sized for the
concurrency). Auth is a ``requests`` auth callable, applied per attempt, so SigV4 signs each anew."""

from __future__ import annotations

import threading
from typing import Any

from .._exceptions import APIConnectionError, APITimeoutError
from . import Request, Response, URLs

DEFAULT_CONNECT_TIMEOUT = 10.0


class HTTPTransport:
    """Sends requests to ``url`` (the base: ``https://…/prod``) over a ``requests.Session``."""

    def __init__(
        self,
        url: str,
        *,
        session: Any = None,
        auth: Any = None,
        pool_size: int = 10,
        verify: bool | str = True,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    ) -> None:
        import requests

        self._requests = requests
        self.url = url.rstrip("/")
        self._urls = URLs(self.url)
        self.auth = auth
        self.verify = verify
        self.connect_timeout = connect_timeout
        self._owns_session = session is None
        self.session = session if session is not None else requests.Session()
        self._pool_size = 0
        self._lock = threading.Lock()
        if self._owns_session:
            self._mount(max(1, pool_size))
        # requests re-reads proxy variables, CA bundle variables and ~/.netrc on every call (half its
        # per-call cost); like httpx, read them once per client: the base URL never changes.
        settings = self.session.merge_environment_settings(self.url, {}, None, verify, None)
        self._send_kwargs = {**settings, "allow_redirects": True}
        netrc = None
        if auth is None and self.session.auth is None and self.session.trust_env:
            from requests.utils import get_netrc_auth

            netrc = get_netrc_auth(self.url)
        self._auth = auth or netrc or _no_auth

    def _mount(self, size: int) -> None:
        from requests.adapters import HTTPAdapter

        # max_retries=0: the Client retries (with backoff and deadline), never urllib3 underneath it.
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=size, max_retries=0)
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)
        self._pool_size = size

    def ensure_pool(self, size: int) -> None:
        if not self._owns_session:
            return
        with self._lock:
            if size > self._pool_size:
                self._mount(size)

    def url_for(self, request: Request) -> str:
        return self._urls(request)

    def send(self, request: Request, timeout: float | None) -> Response:
        requests = self._requests
        url = self.url_for(request)
        limit = None if timeout is None else (min(self.connect_timeout, timeout), timeout)
        try:
            prepared = self.session.prepare_request(
                requests.Request(
                    request.method, url, data=request.body, headers=request.headers, auth=self._auth
                )
            )
            r = self.session.send(prepared, timeout=limit, **self._send_kwargs)
            content = r.content
        except requests.exceptions.SSLError as exc:
            raise APIConnectionError(f"TLS error talking to {url}: {_reason(exc)}", retryable=False) from exc
        except requests.exceptions.ConnectTimeout as exc:
            raise APITimeoutError(f"could not connect to {url} within {limit[0]:.3g} s") from exc  # type: ignore[index]
        except requests.exceptions.ReadTimeout as exc:
            raise APITimeoutError(f"no response from {url} within {timeout:.3g} s") from exc
        except (requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
            if _is_read_timeout(exc):
                raise APITimeoutError(f"response from {url} stalled for {timeout:.3g} s") from exc
            raise APIConnectionError(f"connection to {url} failed: {_reason(exc)}") from exc
        except (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema) as exc:
            raise APIConnectionError(f"invalid URL {url}: {exc}", retryable=False) from exc
        headers = {k.lower(): v for k, v in r.headers.items()}
        return Response(r.status_code, headers, content)

    def close(self) -> None:
        if self._owns_session:
            self.session.close()


def _no_auth(r: Any) -> Any:
    """Stands in for "no auth" so that requests does not look in ~/.netrc on every call."""
    return r


def _is_read_timeout(exc: BaseException) -> bool:
    import urllib3

    cause: BaseException | None = exc
    for _ in range(5):
        if cause is None:
            return False
        if isinstance(cause, urllib3.exceptions.ReadTimeoutError):
            return True
        args = getattr(cause, "args", ())
        cause = args[0] if args and isinstance(args[0], BaseException) else cause.__cause__
    return False


def _reason(exc: BaseException) -> str:
    """The innermost useful text of a requests/urllib3 exception chain."""
    text = str(exc)
    inner: Any = exc.args[0] if exc.args else None
    reason = getattr(inner, "reason", None)
    if reason is not None:
        text = str(reason)
    # urllib3 prefixes "<urllib3.connection.HTTPConnection object at 0x…>: "; drop it.
    if text.startswith("<") and ">: " in text:
        text = text.split(">: ", 1)[1]
    return text[:300]
