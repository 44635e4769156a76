"""Which delivery failures are worth another attempt, and how long to wait before it.

Only what can succeed on retry is retried (ARCHITECTURE.md, "Delivery"): a timeout, a
connection error, 5xx, 408 and 429. Any other 4xx means the receiver will refuse this event
however often it is sent, so it goes to the dead-letter stream at once. A 3xx is treated the
same way: redirects are not followed (a webhook URL that moved is a configuration to fix, and
following it would send signed events somewhere nobody approved).
"""

from __future__ import annotations

import random
from email.utils import parsedate_to_datetime
from enum import Enum

__all__ = ["Verdict", "backoff_seconds", "classify_status", "parse_retry_after", "retry_wait_seconds"]


class Verdict(Enum):
    DELIVERED = "delivered"
    RETRY = "retry"
    REJECTED = "rejected"  # dead letter at once


RETRYABLE_STATUSES = frozenset({408, 429})


def classify_status(status: int) -> Verdict:
    if 200 <= status < 300:
        return Verdict.DELIVERED
    if status >= 500 or status in RETRYABLE_STATUSES:
        return Verdict.RETRY
    return Verdict.REJECTED


def backoff_seconds(attempt: int, base_ms: int, cap_ms: int, rng: random.Random | None = None) -> float:
    """The wait after failed attempt number ``attempt`` (1-based): exponential, capped, jittered.

    ``base * 2**(attempt-1)``, capped at ``cap``, then a uniformly random point in its upper
    half ("equal jitter"): retries of many events that failed together spread out instead of
    arriving together, and no wait is shorter than half the schedule.
    """
    exponent = min(attempt - 1, 62)
    delay_ms = min(cap_ms, base_ms * (1 << exponent))
    r = (rng or random).random()
    return (delay_ms / 2 + r * delay_ms / 2) / 1000.0


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - now)


def retry_wait_seconds(
    attempt: int, base_ms: int, cap_ms: int, retry_after: float | None, rng: random.Random | None = None
) -> float:
    """The wait before the next attempt: the backoff, or the receiver's Retry-After if longer,
    never more than the subscription's backoff cap (a receiver cannot park an event for days)."""
    wait = backoff_seconds(attempt, base_ms, cap_ms, rng)
    if retry_after is not None:
        wait = max(wait, retry_after)
    return min(wait, cap_ms / 1000.0)
