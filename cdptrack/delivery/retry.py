"""When to try a request again, and how long to wait first.

Retried: network errors, 408, 429 and 5xx (the statuses the vendors' own SDKs retry).
Every other 4xx is final: sending the same body again cannot succeed, so it goes to the
dead-letter store.  Waits grow exponentially with full jitter (so a fleet of web workers
does not retry in lock-step) and are capped; a server's ``Retry-After`` wins over the
computed wait but is clamped, so one odd header cannot park a lane for a day.  The total
time spent on one request is bounded by ``max_retry_time``: a retry loop without a
deadline holds its lane for minutes, which is exactly what we design out.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Literal

Verdict = Literal["ok", "retry", "dead"]

RETRY_STATUSES = frozenset({408, 429})


def classify(status: int) -> Verdict:
    """What a response status means for the request that got it."""
    if 200 <= status < 300:
        return "ok"
    if status in RETRY_STATUSES or status >= 500:
        return "retry"
    # 1xx/3xx are not expected from these APIs (httpx does not follow redirects here:
    # a redirect would re-send credentials somewhere else); treat them as final too.
    return "dead"


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP date; None if absent
    or unreadable.  A date in the past means "now" (0)."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if seconds != seconds:  # NaN is unreadable
            return None
        return float(max(0.0, seconds))
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    current = now or datetime.now(timezone.utc)
    return float(max(0.0, (when - current).total_seconds()))


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Backoff settings.  Defaults suit production; tests pass small numbers."""

    backoff: float = 0.5  # first wait (before jitter), seconds
    max_backoff: float = 30.0  # cap on one computed wait
    max_retry_after: float = 300.0  # cap on a server's Retry-After
    max_retry_time: float = 600.0  # total time one request may spend being retried
    jitter: bool = True

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """The wait before attempt ``attempt + 1`` (``attempt`` counts from 1)."""
        if retry_after is not None:
            return min(max(0.0, retry_after), self.max_retry_after)
        ceiling = min(self.max_backoff, self.backoff * (2.0 ** min(attempt - 1, 30)))
        if not self.jitter:
            return ceiling
        # "Equal jitter": at least half the computed wait, so retries still back off.
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    def allows(self, elapsed: float, next_delay: float) -> bool:
        """Whether another attempt after ``next_delay`` stays within the deadline."""
        return elapsed + next_delay <= self.max_retry_time


async def wait_event(event: asyncio.Event, timeout: float) -> None:
    """Wait for ``event`` at most ``timeout`` seconds.  Unlike ``asyncio.wait_for`` on
    Python < 3.12, a cancellation arriving as the event fires is never swallowed, so a
    stopping sender really stops."""
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait({waiter}, timeout=timeout)
    finally:
        waiter.cancel()
