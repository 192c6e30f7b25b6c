"""When and how long to wait before trying a request again: the retry policy, without I/O.

Retried: connection errors, timeouts, and the statuses in ``RetryPolicy.statuses`` (429, 502, 503, 504).
Never retried: any other status (400, 401, 403, 404, 413, 422, 500, …).

The wait is exponential backoff with full jitter (``uniform(0, min(cap, base * 2**n))``, AWS's
recommendation), unless the answer says how long to wait: ``retry-after-ms`` (milliseconds),
or ``Retry-After`` (seconds or an HTTP date). A server-given wait above ``max_retry_after`` is not
honoured by sleeping: the error is raised at once. An overall ``Deadline`` bounds everything: each
attempt's timeout is cut to the time left, and no server-given wait that would end past the deadline is
started. Answers (429/5xx) are retried at most ``max_retries`` times; connection failures (refused,
reset, no answer in time) are retried until the deadline, so a server that restarts comes back within
it (``max_retries=0`` still turns every retry off; without a deadline ``max_retries`` bounds them too).

``attempts()`` is the policy as a generator that yields what to do (``Send`` one attempt, ``Sleep``) and
is sent the outcome; ``Client`` drives it with blocking calls and ``AsyncClient`` with ``await``: one
implementation of the policy, two drivers (see ``_base.drive`` and ``_async.adrive``).
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime

from ._exceptions import APIConnectionError, APIError, OnnxfnError, error_from_response
from ._transports import Request, Response

__all__ = ["RETRY_STATUSES", "Deadline", "RetryPolicy", "Send", "Sleep", "attempts", "parse_retry_after"]

RETRY_STATUSES = frozenset({429, 502, 503, 504})
MIN_ATTEMPT = 0.05  # seconds: a jittered wait is cut so that an attempt this long still fits

log = logging.getLogger("onnxfn.client")


@dataclass(frozen=True)
class RetryPolicy:
    """How many times to retry and how long to wait in between.

    ``max_retries`` counts retries of error answers (so at most ``max_retries + 1`` attempts; connection
    failures are retried until the deadline unless ``max_retries`` is 0); ``backoff_base`` is the cap of
    the first jittered wait, doubling each retry up to ``backoff_max``; ``max_retry_after`` is the longest
    server-requested wait honoured (longer: raise at once).
    """

    max_retries: int = 4
    backoff_base: float = 0.5
    backoff_max: float = 8.0
    max_retry_after: float = 30.0
    statuses: frozenset[int] = field(default=RETRY_STATUSES)

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        if self.backoff_base < 0 or self.backoff_max < 0 or self.max_retry_after < 0:
            raise ValueError("backoff_base, backoff_max and max_retry_after must be >= 0")

    def backoff(self, retry: int, rng: random.Random | None = None) -> float:
        """Full-jitter wait before retry number ``retry`` (0 for the first retry)."""
        cap = min(self.backoff_max, self.backoff_base * (2 ** min(retry, 32)))
        return (rng or random).uniform(0.0, cap)

    def honoured_wait(self, retry_after: float, rng: random.Random | None = None) -> float:
        """The wait for a server-given ``retry_after``: that long, plus up to 10% (at most 0.25 s) so
        that clients told the same thing do not all come back in the same millisecond."""
        return retry_after + (rng or random).uniform(0.0, min(0.25, 0.1 * retry_after))


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (seconds or HTTP date); None if absent
    or unreadable. ``headers`` keys are lower case."""
    raw_ms = headers.get("retry-after-ms")
    if raw_ms:
        try:
            value = float(raw_ms) / 1000.0
        except ValueError:
            value = math.nan
        if math.isfinite(value) and value >= 0:
            return value
    raw = headers.get("retry-after")
    if not raw:
        return None
    raw = raw.strip()
    try:
        value = float(raw)
    except ValueError:
        try:
            when = parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        now = time.time() if now is None else now
        return max(0.0, when.timestamp() - now)
    if not math.isfinite(value) or value < 0:
        return None
    return value


class Deadline:
    """A point in time (monotonic) after which no attempt starts; ``None`` seconds means no deadline."""

    __slots__ = ("end", "seconds")

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self.end = None if seconds is None else time.monotonic() + seconds

    def remaining(self) -> float:
        if self.end is None:
            return math.inf
        return self.end - time.monotonic()


@dataclass(frozen=True)
class Send:
    """Do one attempt: send ``request`` with this ``timeout`` (None: no limit); the driver sends back the
    ``Response`` (any status) or throws the transport's ``APIConnectionError`` into the generator."""

    request: Request
    timeout: float | None


@dataclass(frozen=True)
class Sleep:
    """Wait ``seconds`` before the next attempt; the driver sends back None."""

    seconds: float


Step = Send | Sleep


def attempts(
    request: Request,
    *,
    policy: RetryPolicy,
    timeout: float | None,
    deadline: float | None,
    url: str,
) -> Generator[Step, Response | None, Response]:
    """One logical request under ``policy``: yields ``Send``/``Sleep`` steps, returns the 2xx ``Response``
    or raises the typed error (with ``idempotency_key`` and ``attempts`` set). ``request`` already carries
    its ``idempotency-key`` header, the same on every attempt; ``url`` is for messages and logs."""
    clock = Deadline(deadline)
    key = request.headers.get("idempotency-key")
    debug = log.isEnabledFor(logging.DEBUG)
    attempt = 0
    while True:
        attempt += 1
        left = clock.remaining()
        limit = timeout if left == math.inf else max(0.001, left if timeout is None else min(timeout, left))
        started = time.monotonic()
        error: OnnxfnError
        retry_after: float | None = None
        try:
            resp = yield Send(request, limit)
        except APIConnectionError as exc:
            exc.idempotency_key, exc.attempts = key, attempt
            error, retryable, counted = exc, exc.retryable, False
        else:
            if resp is None:  # pragma: no cover - a driver bug
                raise TypeError("the driver must send the Response of a Send step")
            if resp.status < 400:
                if debug:
                    _log_attempt(request, url, attempt, policy, started, str(resp.status))
                return resp
            retryable, counted = resp.status in policy.statuses, True
            retry_after = parse_retry_after(resp.headers) if retryable else None
            error = error_from_response(
                resp.status,
                resp.headers,
                resp.content,
                method=request.method,
                url=url,
                idempotency_key=key,
                attempts=attempt,
            )
        if debug:
            status = getattr(error, "status", None)
            _log_attempt(
                request, url, attempt, policy, started, str(status or f"{type(error).__name__}: {error}")
            )
        if not retryable or policy.max_retries == 0:
            raise error
        if attempt > policy.max_retries and (counted or clock.seconds is None):
            raise _exhausted(error, attempt, clock)
        if retry_after is not None:
            if retry_after > policy.max_retry_after:
                raise _with_note(
                    error,
                    f"the server asked to retry after {retry_after:g} s, above the "
                    f"max_retry_after of {policy.max_retry_after:g} s",
                )
            wait_for = policy.honoured_wait(retry_after)
            if wait_for >= clock.remaining():
                raise _exhausted(error, attempt, clock)
        else:
            # Our own jittered wait: cut it so that one more attempt still fits before the deadline.
            wait_for = min(policy.backoff(attempt - 1), clock.remaining() - MIN_ATTEMPT)
            if wait_for < 0:
                raise _exhausted(error, attempt, clock)
        if debug:
            log.debug(
                "retrying %s %s in %.3f s (idempotency-key %s)", request.method, request.path, wait_for, key
            )
        yield Sleep(wait_for)


def _log_attempt(
    request: Request, url: str, attempt: int, policy: RetryPolicy, started: float, outcome: str
) -> None:
    log.debug(
        "%s %s attempt %d/%d -> %s in %.1f ms (idempotency-key %s)",
        request.method,
        url,
        attempt,
        policy.max_retries + 1,
        outcome,
        (time.monotonic() - started) * 1000,
        request.headers.get("idempotency-key"),
    )


def _with_note(error: OnnxfnError, note: str) -> OnnxfnError:
    error.args = (f"{error.args[0]}; {note}" if error.args else note,)
    if isinstance(error, (APIError, APIConnectionError)):
        error.message = error.args[0]
    return error


def _exhausted(error: OnnxfnError, attempts: int, clock: Deadline) -> OnnxfnError:
    """The error to raise when retries or time ran out, saying which."""
    if isinstance(error, APIError):
        if attempts > 1 and "attempts" not in error.message:
            _with_note(error, f"gave up after {attempts} attempts")
        return error
    why = f"{attempts} attempt{'s' if attempts > 1 else ''}"
    if clock.seconds is not None and clock.remaining() < clock.seconds:
        why += f" within the {clock.seconds:g} s deadline"
    return _with_note(error, f"gave up after {why}")
