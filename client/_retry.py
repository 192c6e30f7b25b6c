"""When and how long to wait before trying a request again.

Retried: connection errors, timeouts, and the statuses in ``RetryPolicy.statuses`` (429, 502, 503, 504).
Never retried: any other status (400, 401, 403, 404, 413, 422, 500, …).

The wait is exponential backoff with full jitter (``uniform(0, min(cap, base * 2**n))``, AWS's
recommendation), unless the answer says how long to wait: ``retry-after-ms`` (milliseconds),
or ``Retry-After`` (seconds or an HTTP date). A server-given wait above ``max_retry_after`` is not
honoured by sleeping: the error is raised at once. An overall ``Deadline`` bounds everything: each
attempt's timeout is cut to the time left, and no wait that would end past the deadline is started.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime

__all__ = ["RETRY_STATUSES", "Deadline", "RetryPolicy", "parse_retry_after"]

RETRY_STATUSES = frozenset({429, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """How many times to retry and how long to wait in between.

    ``max_retries`` counts retries (so at most ``max_retries + 1`` attempts); ``backoff_base`` is the
    cap of the first jittered wait, doubling each retry up to ``backoff_max``; ``max_retry_after``
    is the longest server-requested wait honoured (longer: raise at once).
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

    @property
    def expired(self) -> bool:
        return self.remaining() <= 0
