"""Dynamic batching: concurrent requests for one model share one ``session.run`` (DESIGN "Dynamic batching").

A request decodes and preprocesses its own input in its own worker thread, then hands its feeds to the
model's :class:`Batcher` and waits. One runner thread per session (``ONNXFN_INSTANCES``) takes the oldest
waiting request and every later one whose feeds can be stacked with it (same input names, dtypes and
per-row shapes, same requested outputs), up to ``batch_max`` rows; it concatenates them along the batch
axis, runs the session once, slices every output back by rows and wakes each request with its own part.
So each request gets the rows it would have got alone, and the data plane encodes them as before.

A runner waits for company at most ``delay`` after the oldest request arrived, and not at all when no other
request for the model is on its way (between arrival and hand-over: see :meth:`Batcher.arrival`): at
one client, batching costs no latency. If a fused run fails, each request is run alone, so one bad input
fails only its own request. A request past its deadline is dropped from the queue and answered 503.

Off by default and always off on Lambda (a container serves one request at a time): then the data plane
calls ``Model.run`` directly, in the request's own thread, as it always did.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from ._errors import NotReady
from ._model import Model

__all__ = ["Batcher", "Direct"]

IDLE_EXIT_S = 60.0  # a runner with nothing to do for this long ends (and starts again on demand)


class _Item:
    __slots__ = ("arrived", "deadline", "done", "error", "feeds", "key", "outputs", "result", "rows")

    def __init__(self, feeds: dict[str, np.ndarray], outputs: list[str], deadline: float) -> None:
        self.feeds = feeds
        self.outputs = outputs
        names = sorted(feeds)
        self.key = (
            tuple((n, feeds[n].dtype.str, feeds[n].shape[1:]) for n in names),
            tuple(outputs),
        )
        self.rows = int(feeds[names[0]].shape[0])
        self.arrived = time.monotonic()
        self.deadline = deadline
        self.done = threading.Event()
        self.result: dict[str, np.ndarray] | None = None
        self.error: BaseException | None = None

    def finish(self, result: dict[str, np.ndarray] | None = None, error: BaseException | None = None) -> None:
        self.result, self.error = result, error
        self.done.set()


class Direct:
    """No batching: ``run`` is ``Model.run`` in the caller's thread (the Lambda and default path)."""

    def __init__(self, model: Model) -> None:
        self.model = model

    def run(self, feeds: dict[str, np.ndarray], outputs: list[str] | None = None) -> dict[str, np.ndarray]:
        return self.model.run(feeds, outputs)


class _Arrival:
    """One request between arriving and handing its feeds over (see :meth:`Batcher.arrival`)."""

    def __init__(self, batcher: Batcher, deadline: float) -> None:
        self.batcher = batcher
        self.deadline = deadline
        self.submitted = False

    def run(self, feeds: dict[str, np.ndarray], outputs: list[str] | None = None) -> dict[str, np.ndarray]:
        return self.batcher.run(feeds, outputs, deadline=self.deadline, arrival=self)


class Batcher:
    """The batching queue of one model, with one runner thread per session of the model."""

    def __init__(self, model: Model, *, delay_ms: float, max_rows: int, timeout: float = 30.0) -> None:
        self.model = model
        self.delay = max(0.0, float(delay_ms)) / 1000
        self.max_rows = max(1, int(max_rows))
        self.timeout = float(timeout)
        self._cond = threading.Condition()
        self._queue: deque[_Item] = deque()
        self._arriving = 0  # requests for this model that have arrived but not handed over their feeds
        self._free_sessions = list(model.sessions)  # sessions without a runner thread
        self.batches = 0  # fused runs so far (for metrics and tests)
        self.rows = 0
        self.largest = 0

    # -- the request side ------------------------------------------------------------------------
    @contextmanager
    def arrival(self, deadline: float | None = None) -> Iterator[_Arrival]:
        """Announce a request from its arrival: runners do not wait for company that is not coming."""
        ticket = _Arrival(self, deadline if deadline is not None else time.monotonic() + self.timeout)
        with self._cond:
            self._arriving += 1
        try:
            yield ticket
        finally:
            if not ticket.submitted:
                with self._cond:
                    self._arriving -= 1
                    self._cond.notify_all()

    def run(
        self,
        feeds: dict[str, np.ndarray],
        outputs: list[str] | None = None,
        *,
        deadline: float | None = None,
        arrival: _Arrival | None = None,
    ) -> dict[str, np.ndarray]:
        """The model's outputs for ``feeds``, computed in a batch with other requests' rows."""
        names = self.model.check(feeds, outputs)
        if any(np.ndim(v) == 0 for v in feeds.values()) or len({len(v) for v in feeds.values()}) != 1:
            if arrival is not None:
                self._hand_over(arrival, None)
            return self.model.run(feeds, names)  # no common batch axis: alone
        item = _Item(feeds, names, deadline if deadline is not None else time.monotonic() + self.timeout)
        self._hand_over(arrival, item)
        if not item.done.wait(max(0.0, item.deadline - time.monotonic())):
            with self._cond:
                try:
                    self._queue.remove(item)
                except ValueError:
                    pass  # already running: its result is dropped
            raise _timeout(self.timeout)
        if item.error is not None:
            raise item.error
        assert item.result is not None
        return item.result

    def _hand_over(self, arrival: _Arrival | None, item: _Item | None) -> None:
        with self._cond:
            if arrival is not None and not arrival.submitted:
                arrival.submitted = True
                self._arriving -= 1
            if item is not None:
                self._queue.append(item)
                while self._free_sessions:  # runners start on demand, one per session
                    session = self._free_sessions.pop()
                    threading.Thread(
                        target=self._runner,
                        args=(session,),
                        name=f"onnxfn-batch-{self.model.name}",
                        daemon=True,
                    ).start()
            self._cond.notify_all()

    # -- the runner side -------------------------------------------------------------------------
    def _runner(self, session: Any) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                with self._cond:
                    if not self._queue:
                        self._free_sessions.append(session)
                        return
                continue
            self._run(session, batch)

    def _next_batch(self) -> list[_Item] | None:
        """Wait for work, then for company (within the delay), then take one batch; None when idle."""
        with self._cond:
            if not self._queue and not self._cond.wait_for(lambda: self._queue, IDLE_EXIT_S):
                return None
            while True:
                if not self._queue:
                    return []
                first = self._queue[0]
                rows = sum(i.rows for i in self._queue if i.key == first.key)
                left = first.arrived + self.delay - time.monotonic()
                if rows >= self.max_rows or self._arriving == 0 or left <= 0:
                    break
                self._cond.wait(left)
            batch, rows, now = [], 0, time.monotonic()
            for item in list(self._queue):
                if item.key != first.key:
                    continue
                if item.deadline <= now:  # waited too long: answer it now, do not run it
                    self._queue.remove(item)
                    item.finish(error=_timeout(self.timeout))
                    continue
                if batch and rows + item.rows > self.max_rows:
                    break
                self._queue.remove(item)
                batch.append(item)
                rows += item.rows
            return batch

    def _run(self, session: Any, batch: list[_Item]) -> None:
        if not batch:
            return
        if len(batch) == 1:
            self._alone(session, batch[0])
            return
        total = sum(i.rows for i in batch)
        try:
            feeds = {n: np.concatenate([i.feeds[n] for i in batch], axis=0) for n in batch[0].feeds}
            results = self.model.run(feeds, batch[0].outputs, session=session)
            if any(np.ndim(v) == 0 or len(v) != total for v in results.values()):
                raise ValueError("an output is not batch-aligned")
        except Exception:  # one bad input, or a model whose outputs do not follow the batch: one by one
            for item in batch:
                self._alone(session, item)
            return
        self._count(total)
        offset = 0
        for item in batch:
            end = offset + item.rows
            item.finish({name: value[offset:end] for name, value in results.items()})
            offset = end

    def _alone(self, session: Any, item: _Item) -> None:
        try:
            result = self.model.run(item.feeds, item.outputs, session=session)
        except BaseException as exc:  # handed to the waiting request, which raises it
            item.finish(error=exc)
            return
        self._count(item.rows)
        item.finish(result)

    def _count(self, rows: int) -> None:
        with self._cond:
            self.batches += 1
            self.rows += rows
            self.largest = max(self.largest, rows)


def _timeout(seconds: float) -> NotReady:
    return NotReady(
        f"inference took longer than {seconds:g} s (ONNXFN_REQUEST_TIMEOUT): send smaller batches",
        headers={"retry-after": "1"},
    )
