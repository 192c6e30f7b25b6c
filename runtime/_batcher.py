"""Model work for the HTTP server: a queue per model, one runner thread per session, dynamic batching.

A request's model work is a :class:`Job` (built by the data plane): ``prepare()`` parses and decodes the
request into feeds, the model runs, ``finish(state, outputs)`` turns its rows into the answer. The event
loop only queues the job and awaits it (:meth:`Batcher.submit`); the model's runner threads, one per
onnxruntime session (``ONNXFN_INSTANCES``, Triton's instance group), take jobs from the queue and do all
of the CPU work. So a request costs no worker-thread hop of its own, and under load a runner goes from
one job to the next without sleeping: Python's GIL is shared by the loop and a few runners, not by a
thread per request.

With batching on (``ONNXFN_BATCH_DELAY_MS`` > 0, DESIGN "Dynamic batching"), a runner fuses the job it took
with the queued jobs whose feeds stack with it (same input names, dtypes and per-row shapes, same
requested outputs), up to ``batch_max`` rows; it waits for company at most ``delay`` after the first job
arrived, and only while other requests for the model are in flight (at one client, batching costs no
latency). One ``session.run`` on the concatenation, outputs sliced back by rows: each request gets the
rows it would have got alone. If a fused run fails, each job runs alone, so one bad input fails only its
own request; a job that fails to prepare fails alone too. A job past its deadline is answered 503
without running. Without batching, a runner runs each job alone.

Synchronous callers (threads) use :meth:`Batcher.run`. Lambda and ``Client.local`` never come here: they
run a job in the request's own thread (``DataPlane.execute``).
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

from ._errors import NotReady
from ._model import Model

__all__ = ["Batcher", "Job"]

IDLE_EXIT_S = 60.0  # a runner with nothing to do for this long ends (and starts again on demand)

Feeds = dict[str, np.ndarray]


class Job:
    """One request's model work. ``prepare() -> (feeds, output names or None, state)`` and
    ``finish(state, outputs) -> answer`` run in a runner thread, in the request's context (trace spans)."""

    __slots__ = (
        "arrived",
        "cancelled",
        "context",
        "deadline",
        "finish",
        "model",
        "notify",
        "prepare",
        "timings",
    )

    def __init__(
        self,
        model: Model,
        prepare: Callable[[], tuple[Feeds, list[str] | None, Any]],
        finish: Callable[[Any, Feeds], Any],
        timings: dict[str, float] | None = None,
    ) -> None:
        self.model = model
        self.timings = timings if timings is not None else {}  # Server-Timing phases, ms
        self.prepare = prepare
        self.finish = finish
        self.arrived = time.monotonic()
        self.deadline = self.arrived + 30.0
        self.cancelled = False  # the request gave up (timeout, client gone): skip it if not started
        self.context = contextvars.copy_context()
        self.notify: Callable[[Any, BaseException | None], None] = _ignore

    def execute(self) -> Any:
        """Prepare, run and finish in this thread (no scheduler: Lambda, ``Client.local``, tests)."""
        feeds, outputs, state = self.prepare()
        t0 = time.perf_counter()
        results = self.model.run(feeds, outputs)
        self.timings["inference"] = (time.perf_counter() - t0) * 1000
        return self.finish(state, results)


class _Ready:
    """A prepared job: its feeds, the batch key they stack under, and its rows."""

    __slots__ = ("feeds", "job", "key", "names", "rows", "state")

    def __init__(self, job: Job, feeds: Feeds, names: list[str], state: Any) -> None:
        self.job, self.feeds, self.names, self.state = job, feeds, names, state
        values = list(feeds.values())
        if any(np.ndim(v) == 0 for v in values) or len({len(v) for v in values}) != 1:
            self.key: tuple[Any, ...] | None = None  # no common batch axis: runs alone
            self.rows = 1
        else:
            self.key = (
                tuple((n, feeds[n].dtype.str, feeds[n].shape[1:]) for n in sorted(feeds)),
                tuple(names),
            )
            self.rows = len(values[0])


class Batcher:
    """The job queue of one model, with one runner thread per session (started on demand)."""

    def __init__(
        self, model: Model, *, delay_ms: float, max_rows: int, timeout: float = 30.0, fuse: bool = True
    ) -> None:
        self.model = model
        self.delay = max(0.0, float(delay_ms)) / 1000
        self.max_rows = max(1, int(max_rows))
        self.timeout = float(timeout)
        self.fuse = fuse and model.batchable
        self._cond = threading.Condition()
        self._queue: deque[Job] = deque()
        self._inflight = 0  # jobs queued or being run, not yet answered
        self._free_sessions = list(model.sessions)  # sessions without a runner thread
        self.batches = 0  # runs so far, fused or alone (for metrics and tests)
        self.rows = 0
        self.largest = 0

    # -- the request side ------------------------------------------------------------------------
    async def submit(self, job: Job) -> Any:
        """The job's answer, from the event loop: queued, run by a runner, awaited without a thread."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()

        def notify(result: Any, error: BaseException | None) -> None:
            loop.call_soon_threadsafe(_settle, future, result, error)

        job.notify = notify
        self._enqueue(job)
        try:
            return await asyncio.wait_for(future, max(0.0, job.deadline - time.monotonic()))
        except asyncio.TimeoutError:
            raise _timeout(self.timeout) from None
        finally:
            if not future.done() or future.cancelled():
                job.cancelled = True

    def run(self, job: Job) -> Any:
        """The job's answer, for a calling thread that blocks until it is ready."""
        done = threading.Event()
        box: list[tuple[Any, BaseException | None]] = []

        def notify(result: Any, error: BaseException | None) -> None:
            box.append((result, error))
            done.set()

        job.notify = notify
        self._enqueue(job)
        if not done.wait(max(0.0, job.deadline - time.monotonic())):
            job.cancelled = True
            raise _timeout(self.timeout)
        result, error = box[0]
        if error is not None:
            raise error
        return result

    def _enqueue(self, job: Job) -> None:
        job.deadline = min(job.deadline, job.arrived + self.timeout)
        with self._cond:
            self._queue.append(job)
            self._inflight += 1
            while self._free_sessions:  # runners start on demand, one per session
                session = self._free_sessions.pop()
                threading.Thread(
                    target=self._runner, args=(session,), name=f"onnxfn-run-{self.model.name}", daemon=True
                ).start()
            self._cond.notify()

    # -- the runner side -------------------------------------------------------------------------
    def _runner(self, session: Any) -> None:
        carry: _Ready | None = None  # a prepared job that did not fit the last batch
        while True:
            if carry is None:
                with self._cond:
                    if not self._queue and not self._cond.wait_for(lambda: self._queue, IDLE_EXIT_S):
                        self._free_sessions.append(session)
                        return
                    job = self._queue.popleft()
                first = self._prepare(job)
                if first is None:
                    continue
            else:
                first, carry = carry, None
            batch, carry = self._collect(first)
            self._run(session, batch)

    def _prepare(self, job: Job) -> _Ready | None:
        """``job`` prepared, or None when it was answered already (gave up, expired, bad input)."""
        if job.cancelled:
            self._answer(job, None, None)
            return None
        now = time.monotonic()
        if now >= job.deadline:  # waited too long in the queue: answer now, do not run
            self._answer(job, None, _timeout(self.timeout))
            return None
        job.timings["queue"] = (now - job.arrived) * 1000
        try:
            feeds, outputs, state = job.context.run(job.prepare)
            names = self.model.check(feeds, outputs)
        except BaseException as exc:  # bad input: this request alone fails
            self._answer(job, None, exc)
            return None
        return _Ready(job, feeds, names, state)

    def _collect(self, first: _Ready) -> tuple[list[_Ready], _Ready | None]:
        """``first`` and the queued jobs that stack with it; the first one that does not, carried over."""
        batch, rows = [first], first.rows
        if not self.fuse or first.key is None:
            return batch, None
        deadline = first.job.arrived + self.delay
        while rows < self.max_rows:
            with self._cond:
                while not self._queue:
                    left = deadline - time.monotonic()
                    if left <= 0 or self._inflight <= len(batch):  # nobody else in flight: go now
                        return batch, None
                    self._cond.wait(left)
                job = self._queue.popleft()
            ready = self._prepare(job)
            if ready is None:
                continue
            if ready.key != first.key or rows + ready.rows > self.max_rows:
                return batch, ready
            batch.append(ready)
            rows += ready.rows
        return batch, None

    def _run(self, session: Any, batch: list[_Ready]) -> None:
        if len(batch) == 1:
            self._alone(session, batch[0])
            return
        total = sum(r.rows for r in batch)
        try:
            feeds = {n: np.concatenate([r.feeds[n] for r in batch], axis=0) for n in batch[0].feeds}
            t0 = time.perf_counter()
            # The run's trace span goes under the first request's (its ``rows`` attribute tells the batch).
            results = batch[0].job.context.run(self.model.run, feeds, batch[0].names, session=session)
            ms = (time.perf_counter() - t0) * 1000
            if any(np.ndim(v) == 0 or len(v) != total for v in results.values()):
                raise ValueError("an output is not batch-aligned")
        except Exception:  # one bad input, or a model whose outputs do not follow the batch: one by one
            for ready in batch:
                self._alone(session, ready)
            return
        self._count(total)
        offset = 0
        for ready in batch:
            ready.job.timings["inference"] = ms
            end = offset + ready.rows
            self._finish(ready, {name: value[offset:end] for name, value in results.items()})
            offset = end

    def _alone(self, session: Any, ready: _Ready) -> None:
        try:
            t0 = time.perf_counter()
            results = ready.job.context.run(self.model.run, ready.feeds, ready.names, session=session)
            ready.job.timings["inference"] = (time.perf_counter() - t0) * 1000
        except BaseException as exc:  # handed to the waiting request, which raises it
            self._answer(ready.job, None, exc)
            return
        self._count(ready.rows)
        self._finish(ready, results)

    def _finish(self, ready: _Ready, results: Feeds) -> None:
        try:
            answer = ready.job.context.run(ready.job.finish, ready.state, results)
        except BaseException as exc:
            self._answer(ready.job, None, exc)
            return
        self._answer(ready.job, answer, None)

    def _answer(self, job: Job, result: Any, error: BaseException | None) -> None:
        with self._cond:
            self._inflight -= 1
        if not job.cancelled:
            try:
                job.notify(result, error)
            except RuntimeError:  # the event loop closed (shutdown): nobody is waiting any more
                pass

    def _count(self, rows: int) -> None:
        with self._cond:
            self.batches += 1
            self.rows += rows
            self.largest = max(self.largest, rows)


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # the request gave up meanwhile
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _ignore(result: Any, error: BaseException | None) -> None:
    return None


def _timeout(seconds: float) -> NotReady:
    return NotReady(
        f"inference took longer than {seconds:g} s (ONNXFN_REQUEST_TIMEOUT): send smaller batches",
        headers={"retry-after": "1"},
    )
