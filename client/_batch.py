"""The ``predict_batch`` engine: chunking by count and bytes, an adaptive batch size, bisection of bad
requests, results in input order, and what to do on failure.

``BatchRun`` is the state of one call and, like the endpoints, sans-I/O: ``BatchRun.send`` is a flow
(see ``_base``). ``run_batch`` drives it on a thread pool for ``Client``; ``arun_batch`` on asyncio
tasks for ``AsyncClient`` (reading and encoding inputs in a worker thread, off the event loop).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sized
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

from ._base import BaseClient, Flow, Options, drive
from ._encode import Encoded, batch_overhead, encode
from ._exceptions import (
    AuthenticationError,
    BadRequestError,
    BatchError,
    NotFoundError,
    OnnxfnError,
    PayloadTooLargeError,
)
from ._transports import Transport
from ._types import BatchResult, Prediction

__all__ = ["BatchRun", "arun_batch", "run_batch"]

Chunk = list[tuple[int, Encoded]]


class BatchRun:
    """The state of one ``predict_batch`` call: chunking, adaptive batch size, results, failures."""

    def __init__(
        self,
        client: BaseClient,
        *,
        model: str | None,
        top_k: int,
        batch_size: int,
        max_bytes: int,
        return_exceptions: bool,
        options: Options,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if max_bytes < 1:
            raise ValueError("max_bytes must be >= 1")
        self.client = client
        self.model = model
        self.top_k = top_k
        self.batch_size = batch_size
        self.max_bytes = max_bytes
        self.return_exceptions = return_exceptions
        self.options = options
        self.results: dict[int, Prediction | BaseException] = {}
        self.count = 0
        self.requests = 0
        self.failures: dict[int, BaseException] = {}
        self.fatal: BaseException | None = None  # wrong key or model: no point sending the rest
        self.started = time.monotonic()
        self._item_errors = 0
        self._lock = threading.Lock()

    @property
    def failed(self) -> bool:
        return bool(self.failures) and not self.return_exceptions

    def _fail(self, index: int, exc: BaseException) -> None:
        with self._lock:
            self.results[index] = exc
            self.failures.setdefault(index, exc)
            if getattr(exc, "index", None) is None:
                try:
                    exc.index = index  # type: ignore[attr-defined]
                except AttributeError:  # pragma: no cover - exceptions with __slots__
                    pass

    def take_item_errors(self) -> int:
        n, self._item_errors = self._item_errors, 0
        return n

    def chunks(self, xs: Iterable[Any]) -> Iterator[Chunk]:
        """Chunks of ``(index, Encoded)``, cut by count and bytes; items that cannot be sent fail here
        (and yield an empty chunk, so that the caller notices a failure early)."""
        overhead = batch_overhead(self.top_k)
        chunk: Chunk = []
        size = overhead
        for index, x in enumerate(xs):
            self.count = index + 1
            try:
                item = encode(x)
                if item.size > self.max_bytes:
                    raise PayloadTooLargeError(
                        f"item {index}{f' ({item.name})' if item.name else ''} is {item.size:,} bytes, above "
                        f"max_bytes={self.max_bytes:,}: not sent (Lambda takes ~6 MB per request; "
                        "send a smaller image)",
                        status=None,
                    )
                piece = len(item.piece) + 1
            except (OSError, ValueError, TypeError, OnnxfnError) as exc:
                self._fail(index, exc)
                self._item_errors += 1
                yield []
                continue
            if chunk and (len(chunk) >= self.batch_size or size + piece > self.max_bytes):
                yield chunk
                chunk, size = [], overhead
            chunk.append((index, item))
            size += piece
        if chunk:
            yield chunk

    def send(self, chunk: Chunk) -> Flow[int]:
        """Send one chunk (bisecting on 400/413) and store its results; returns the items it settled."""
        if self.fatal is not None or self.failed:
            for index, _ in chunk:
                if self.fatal is not None:
                    self._fail(index, self.fatal)
            return len(chunk)
        try:
            predictions = yield from self.client._predict_flow(
                [item for _, item in chunk], self.model, self.top_k, self.options
            )
        except (BadRequestError, PayloadTooLargeError) as exc:
            with self._lock:
                self.requests += 1
                if isinstance(exc, PayloadTooLargeError) and len(chunk) > 1:
                    self.batch_size = max(1, min(self.batch_size, len(chunk) // 2))
            if len(chunk) == 1:
                self._fail(chunk[0][0], exc)
                return 1
            half = len(chunk) // 2
            settled = yield from self.send(chunk[:half])
            if not self.failed:
                settled += yield from self.send(chunk[half:])
            return settled if self.return_exceptions else len(chunk)
        except OnnxfnError as exc:
            with self._lock:
                self.requests += 1
                if isinstance(exc, (AuthenticationError, NotFoundError)):
                    self.fatal = exc
            for index, _ in chunk:
                self._fail(index, exc)
            return len(chunk)
        with self._lock:
            self.requests += 1
            for (index, _), prediction in zip(chunk, predictions, strict=True):
                self.results[index] = prediction
        return len(chunk)

    def outcome(self) -> BatchResult:
        """The ``BatchResult``, or the ``BatchError`` (keeping what finished) when an item failed."""
        if self.failed:
            done = {i: r for i, r in self.results.items() if isinstance(r, Prediction)}
            error = BatchError.from_run(done, dict(sorted(self.failures.items())), self.count)
            raise error from error.error
        items = [self.results[i] for i in range(self.count)]
        return BatchResult(items, requests=self.requests, elapsed=time.monotonic() - self.started)


def progress_bar(total: int | None) -> Any:
    try:
        from tqdm.auto import tqdm
    except ImportError:
        raise ImportError("progress=True needs tqdm: pip install tqdm") from None
    return tqdm(total=total, unit="item", desc="predict")


def _total(xs: Iterable[Any]) -> int | None:
    return len(xs) if isinstance(xs, Sized) else None


def run_batch(
    run: BatchRun, xs: Iterable[Any], concurrency: int, progress: bool, transport: Transport
) -> BatchResult:
    """Drive ``run`` over ``xs`` with up to ``concurrency`` requests in flight on worker threads."""
    bar = progress_bar(_total(xs)) if progress else None
    pending: set[Future[int]] = set()
    executor = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="onnxfn-client")

    def collect(done: set[Future[int]]) -> None:
        for future in done:
            if not future.cancelled():
                settled = future.result()  # a bug (not an OnnxfnError) propagates
                if bar is not None:
                    bar.update(settled)

    try:
        for chunk in run.chunks(xs):
            if run.failed:
                break
            if chunk:
                pending.add(executor.submit(drive, run.send(chunk), transport))
            if bar is not None:
                bar.update(run.take_item_errors())
            while len(pending) >= 2 * concurrency:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                collect(done)
        if run.failed:  # do not start what is queued; let what is in flight finish
            pending = {f for f in pending if not f.cancel()}
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            collect(done)
    finally:
        for future in pending:
            future.cancel()
        executor.shutdown(wait=True)
        if bar is not None:
            bar.close()
    return run.outcome()


async def arun_batch(
    run: BatchRun,
    xs: Iterable[Any],
    concurrency: int,
    progress: bool,
    adrive: Callable[[Flow[int]], Awaitable[int]],
) -> BatchResult:
    """Drive ``run`` over ``xs`` with up to ``concurrency`` requests in flight as asyncio tasks; inputs
    are read and encoded in a worker thread so that big images never block the event loop (a list of
    encoded image bytes has nothing to read or encode: it is chunked on the loop, without the hop)."""
    bar = progress_bar(_total(xs)) if progress else None
    inline = _already_encoded(xs)
    chunks = run.chunks(xs)
    pending: set[asyncio.Task[int]] = set()
    slots = asyncio.Semaphore(concurrency)

    async def send(chunk: Chunk) -> int:
        async with slots:  # queued chunks that find the run failed return without sending
            return await adrive(run.send(chunk))

    def collect(done: set[asyncio.Task[int]]) -> None:
        for task in done:
            settled = task.result()  # a bug (not an OnnxfnError) propagates
            if bar is not None:
                bar.update(settled)

    try:
        while not run.failed:
            chunk = next(chunks, None) if inline else await asyncio.to_thread(next, chunks, None)
            if chunk is None:
                break
            if chunk:
                pending.add(asyncio.ensure_future(send(chunk)))
            if bar is not None:
                bar.update(run.take_item_errors())
            while len(pending) >= 2 * concurrency:  # encode the next chunks while these are sent
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                collect(done)
        while pending:  # on failure too: let what is in flight finish, so its results are kept
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            collect(done)
    finally:
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        if bar is not None:
            bar.close()
    return run.outcome()


def _already_encoded(xs: Iterable[Any]) -> bool:
    """True for a list or tuple of image bytes (or ``Encoded``): chunking them copies no pixels."""
    return isinstance(xs, (list, tuple)) and all(isinstance(x, (bytes, Encoded)) for x in xs)
