"""Model work for the HTTP server: a queue per model, one runner thread per session, dynamic batching.

A request's model work is a :class:`Job` (built by the data plane): ``prepare()`` parses and decodes the
request into feeds, the model runs, ``finish(state, outputs)`` turns its rows into the answer. The event
loop only queues the job and awaits it (:meth:`Batcher.submit`); the model's runner threads (one per
``--threads`` cores by default, at least one per onnxruntime session: ``Settings.runners``) take jobs
from the queue and do all of the CPU work. So a request costs no worker-thread hop of its own, and under load a runner goes from
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
        "future",
        "loop",
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
        self.notify: Callable[[Any, BaseException | None], None] = _ignore  # a thread's waiter
        self.loop: asyncio.AbstractEventLoop | None = None  # or an event loop's future (submit)
        self.future: asyncio.Future[Any] | None = None

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
    """The job queue of one model, with ``runners`` runner threads (started on demand), at least one per
    session, sharing the sessions round robin."""

    def __init__(
        self,
        model: Model,
        *,
        delay_ms: float,
        max_rows: int,
        timeout: float = 30.0,
        fuse: bool = True,
        runners: int | None = None,
    ) -> None:
        self.model = model
        self.delay = max(0.0, float(delay_ms)) / 1000
        self.max_rows = max(1, int(max_rows))
        self.timeout = float(timeout)
        self.fuse = fuse and model.batchable
        self._cond = threading.Condition()
        self._queue: deque[Job] = deque()
        self._inflight = 0  # jobs queued or being run, not yet answered
        self._closed = False  # the model is no longer served: runners end when idle
        sessions = model.sessions
        count = max(len(sessions), runners or 0)  # runners share the sessions round robin
        self._free_sessions = [sessions[i % len(sessions)] for i in range(count)]  # not running yet
        self.batches = 0  # runs so far, fused or alone (for metrics and tests)
        self.rows = 0
        self.largest = 0

    # -- the request side ------------------------------------------------------------------------
    async def submit(self, job: Job) -> Any:
        """The job's answer, from the event loop: queued, run by a runner, awaited without a thread."""
        job.loop = asyncio.get_running_loop()
        job.future = future = job.loop.create_future()
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

    def close(self) -> None:
        """The model was replaced or removed: runners finish what is queued, then end (a late job still
        gets a runner)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

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
                    if not self._queue:
                        self._cond.wait_for(lambda: self._queue or self._closed, IDLE_EXIT_S)
                    if not self._queue:  # idle that long, or closed: end (a new job starts a runner)
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
        """Run ``batch`` (fused when it can be), then answer its requests: one wake-up per event loop."""
        answers: list[tuple[Job, Any, BaseException | None]] = []
        try:
            self._compute(session, batch, answers)
        finally:
            self._deliver(answers)

    def _compute(self, session: Any, batch: list[_Ready], answers: list[tuple[Job, Any, Any]]) -> None:
        if len(batch) == 1:
            self._alone(session, batch[0], answers)
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
                self._alone(session, ready, answers)
            return
        self._count(total)
        offset = 0
        for ready in batch:
            ready.job.timings["inference"] = ms
            end = offset + ready.rows
            answers.append(self._finish(ready, {name: value[offset:end] for name, value in results.items()}))
            offset = end

    def _alone(self, session: Any, ready: _Ready, answers: list[tuple[Job, Any, Any]]) -> None:
        try:
            t0 = time.perf_counter()
            results = ready.job.context.run(self.model.run, ready.feeds, ready.names, session=session)
            ready.job.timings["inference"] = (time.perf_counter() - t0) * 1000
        except BaseException as exc:  # handed to the waiting request, which raises it
            answers.append((ready.job, None, exc))
            return
        self._count(ready.rows)
        answers.append(self._finish(ready, results))

    def _finish(self, ready: _Ready, results: Feeds) -> tuple[Job, Any, BaseException | None]:
        try:
            return ready.job, ready.job.context.run(ready.job.finish, ready.state, results), None
        except BaseException as exc:
            return ready.job, None, exc

    def _answer(self, job: Job, result: Any, error: BaseException | None) -> None:
        self._deliver([(job, result, error)])

    def _deliver(self, answers: list[tuple[Job, Any, BaseException | None]]) -> None:
        """Hand each answer to its waiter; the futures of one event loop in one ``call_soon_threadsafe``
        (each call wakes the loop: a syscall under the GIL, once per batch instead of once per request)."""
        if not answers:
            return
        with self._cond:
            self._inflight -= len(answers)
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Any, Any, Any]]] = {}
        for job, result, error in answers:
            if job.cancelled:
                continue
            if job.loop is not None:
                by_loop.setdefault(job.loop, []).append((job.future, result, error))
            else:
                job.notify(result, error)
        for loop, settled in by_loop.items():
            try:
                loop.call_soon_threadsafe(_settle_all, settled)
            except RuntimeError:  # the event loop closed (shutdown): nobody is waiting any more
                pass

    def _count(self, rows: int) -> None:
        with self._cond:
            self.batches += 1
            self.rows += rows
            self.largest = max(self.largest, rows)


def _settle_all(settled: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for future, result, error in settled:
        if future.done():  # the request gave up meanwhile
            continue
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
