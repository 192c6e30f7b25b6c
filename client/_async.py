"""``AsyncClient``: ``Client``'s API for asyncio, over aiohttp.

The same flows as ``Client`` (``_base.BaseClient``: encoding, headers, ``Idempotency-Key``, trace context,
the retry policy, deadlines, answers, errors), driven by ``adrive`` with ``await`` instead of blocking
calls. Work that can take long on big inputs (reading files, encoding images to PNG) runs in a worker
thread, so the event loop is never blocked by it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ._auth import resolve_auth
from ._base import (
    DEFAULT_DEADLINE,
    DEFAULT_MAX_BYTES,
    DEFAULT_TIMEOUT,
    BaseClient,
    Flow,
    Options,
    T,
    env_api_key,
    resolve_url,
)
from ._batch import BatchRun, arun_batch
from ._encode import Encoded, encode
from ._exceptions import APIConnectionError
from ._retry import RetryPolicy, Sleep
from ._transports import AsyncTransport, Request, Response, Transport
from ._types import BatchResult, Explanation, Prediction

__all__ = ["AsyncClient", "adrive"]


async def adrive(flow: Flow[T], transport: AsyncTransport) -> T:
    """Run ``flow`` to its end with asyncio: await each attempt, ``asyncio.sleep`` each wait."""
    value: Response | None = None
    error: APIConnectionError | None = None
    while True:
        try:
            step = flow.send(value) if error is None else flow.throw(error)
        except StopIteration as stop:
            result: T = stop.value
            return result
        value, error = None, None
        if isinstance(step, Sleep):
            await asyncio.sleep(step.seconds)
        else:
            try:
                value = await transport.send(step.request, step.timeout)
            except APIConnectionError as exc:
                error = exc


class _InThread:
    """A blocking transport (``Client.local``'s) run in worker threads: ``AsyncClient.local``."""

    def __init__(self, transport: Transport) -> None:
        self.inner = transport
        self.url = transport.url

    async def send(self, request: Request, timeout: float | None) -> Response:
        return await asyncio.to_thread(self.inner.send, request, timeout)

    def url_for(self, request: Request) -> str:
        return self.inner.url_for(request)

    def ensure_pool(self, size: int) -> None:
        self.inner.ensure_pool(size)

    async def aclose(self) -> None:
        self.inner.close()


async def _encode(x: Any) -> Encoded:
    """``encode(x)``; off the event loop unless it is already bytes (files, PNG encoding, PIL)."""
    if isinstance(x, (bytes, Encoded)):
        return encode(x)
    return await asyncio.to_thread(encode, x)


class AsyncClient(BaseClient):
    """``Client`` for asyncio: ``async with AsyncClient(url, api_key=...) as c: await c.predict(x)``.

    The same arguments as ``Client`` (except ``session``: the client owns its ``aiohttp`` session, made in
    the running loop on first use) and the same methods as coroutines: ``predict``, ``predict_batch``,
    ``infer``, ``metadata``, ``models``, ``health``; the same errors, retries, deadline and
    ``Idempotency-Key``. ``auth`` callables set headers on an object with ``method``, ``url``,
    ``headers`` and ``body`` (``APIKeyAuth``, ``BearerAuth``, ``SigV4Auth`` do). Close it with
    ``async with`` or ``await aclose()``; use it from one event loop.
    """

    _transport: AsyncTransport

    def __init__(
        self,
        url: str | None = None,
        *,
        api_key: str | None = None,
        auth: Any = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        deadline: float | None = DEFAULT_DEADLINE,
        max_retries: int | None = None,
        retry: RetryPolicy | None = None,
        model: str | None = None,
        max_concurrency: int = 4,
        headers: Mapping[str, str] | None = None,
        verify: bool | str = True,
    ) -> None:
        from ._transports.aio import AsyncHTTPTransport

        url = resolve_url(url, "AsyncClient")
        transport = AsyncHTTPTransport(
            url, auth=resolve_auth(auth, url), pool_size=max(10, max_concurrency), verify=verify
        )
        self._configure(
            transport,
            api_key=api_key if api_key is not None else env_api_key(),
            timeout=timeout,
            deadline=deadline,
            max_retries=max_retries,
            retry=retry,
            model=model,
            max_concurrency=max_concurrency,
            headers=headers,
        )

    @classmethod
    def local(
        cls,
        source: str | Path,
        *,
        model: str | None = None,
        threads: int | None = None,
        max_concurrency: int = 1,
    ) -> AsyncClient:
        """``Client.local`` for asyncio: models in process, each call in a worker thread."""
        from ._transports.local import LocalTransport

        client = cls.__new__(cls)
        transport = _InThread(LocalTransport(source, default=model, threads=threads))
        client._in_process(transport, model, max_concurrency)
        return client

    # -- lifecycle -------------------------------------------------------------------------------------
    async def aclose(self) -> None:
        """Close the pooled connections."""
        await self._transport.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- endpoints -------------------------------------------------------------------------------------
    async def predict(
        self,
        x: Any,
        *,
        model: str | None = None,
        top_k: int = 5,
        timeout: float | None = None,
        deadline: float | None = None,
        traceparent: str | None = None,
    ) -> Prediction:
        """Classify one input (what ``Client.predict`` takes)."""
        options = Options(timeout, deadline, traceparent)
        flow = self._predict_flow([await _encode(x)], model, top_k, options)
        return (await adrive(flow, self._transport))[0]

    async def predict_batch(
        self,
        xs: Iterable[Any],
        *,
        model: str | None = None,
        top_k: int = 5,
        batch_size: int = 32,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_concurrency: int | None = None,
        progress: bool = False,
        return_exceptions: bool = False,
        timeout: float | None = None,
        deadline: float | None = None,
        traceparent: str | None = None,
    ) -> BatchResult:
        """Classify many inputs, as ``Client.predict_batch`` (in input order; ``BatchError`` keeps what
        finished). Inputs are read and encoded in a worker thread."""
        run = BatchRun(
            self,
            model=model,
            top_k=top_k,
            batch_size=batch_size,
            max_bytes=max_bytes,
            return_exceptions=return_exceptions,
            options=Options(timeout, deadline, traceparent),
        )
        concurrency = max(1, int(max_concurrency or self.max_concurrency))
        self._transport.ensure_pool(concurrency)
        return await arun_batch(run, xs, concurrency, progress, self._drive)

    async def explain(
        self,
        x: Any,
        *,
        model: str | None = None,
        target: str | int | None = None,
        method: str | None = None,
        timeout: float | None = None,
        deadline: float | None = None,
        traceparent: str | None = None,
    ) -> Explanation:
        """Why the model answers what it does for one input (as ``Client.explain``)."""
        options = Options(timeout, deadline, traceparent)
        flow = self._explain_flow(await _encode(x), model, target, method, options)
        return await adrive(flow, self._transport)

    async def infer(
        self,
        inputs: Mapping[str, Any] | np.ndarray,
        *,
        model: str | None = None,
        version: str | None = None,
        outputs: Iterable[str] | None = None,
        binary: bool = True,
        timeout: float | None = None,
        deadline: float | None = None,
        traceparent: str | None = None,
    ) -> dict[str, np.ndarray]:
        """Raw tensors over KServe V2 (what ``Client.infer`` takes)."""
        options = Options(timeout, deadline, traceparent)
        return await adrive(
            self._infer_flow(inputs, model, version, outputs, binary, options), self._transport
        )

    async def metadata(self, model: str | None = None, *, traceparent: str | None = None) -> dict[str, Any]:
        """KServe V2 model metadata (as ``Client.metadata``)."""
        return await adrive(self._metadata_flow(model, Options(traceparent=traceparent)), self._transport)

    async def models(self, *, traceparent: str | None = None) -> list[dict[str, Any]]:
        """The models the server has (as ``Client.models``)."""
        return await adrive(self._models_flow(Options(traceparent=traceparent)), self._transport)

    async def health(self, timeout: float = 5.0) -> bool:
        """True when the server is up and ready (as ``Client.health``); never raises for a down server."""
        return await adrive(self._health_flow(timeout), self._transport)

    async def _drive(self, flow: Flow[int]) -> int:
        return await adrive(flow, self._transport)
