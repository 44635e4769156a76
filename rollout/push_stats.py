"""Totals of push attempts and their duration, kept in Redis for the portal's ``/metrics``.

Pushes run in the Celery worker, while Prometheus scrapes the web process; a counter in the
worker's memory would never reach it, and would restart at zero with the worker. So each push
attempt adds to one Redis hash (``KeySpace.push_stats``) in one round trip — a count by kind and
outcome, and a duration histogram — and ``tracing.portal_metrics`` turns the hash into
Prometheus series when scraped. A Redis error is logged and never fails a push.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import redis

from . import redis_keys

log = logging.getLogger(__name__)

#: Upper bounds (seconds) of the duration buckets; a push of a large mesh takes a few seconds.
BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def _bucket_field(bound: float) -> str:
    return f"le:{bound:g}"


def record(kind: str, outcome: str, seconds: float) -> None:
    """Count one push attempt of ``kind`` that ended ``outcome`` after ``seconds``."""
    try:
        pipe = redis_keys.client().pipeline(transaction=False)
        key = redis_keys.keys().push_stats
        pipe.hincrby(key, f"count:{kind}:{outcome}", 1)
        pipe.hincrbyfloat(key, "seconds_sum", seconds)
        bound = next((b for b in BUCKETS if seconds <= b), None)
        pipe.hincrby(key, _bucket_field(bound) if bound is not None else "le:+Inf", 1)
        pipe.execute()
    except redis.RedisError as error:
        log.warning("push totals not recorded in Redis: %s", error)


@dataclass
class PushStats:
    counts: dict[tuple[str, str], int] = field(default_factory=dict)  # (kind, outcome) -> attempts
    buckets: dict[str, int] = field(default_factory=dict)  # "0.1" or "+Inf" -> attempts in that bucket alone
    seconds_sum: float = 0.0

    def cumulative_buckets(self) -> list[tuple[str, float]]:
        """Prometheus's buckets: attempts at or under each bound, ending with ``+Inf`` (all)."""
        out, running = [], 0
        for bound in BUCKETS:
            running += self.buckets.get(f"{bound:g}", 0)
            out.append((f"{bound:g}", running))
        out.append(("+Inf", running + self.buckets.get("+Inf", 0)))
        return out


def read() -> PushStats:
    """The totals as recorded so far (raises Redis errors: the caller decides)."""
    raw = redis_keys.client().hgetall(redis_keys.keys().push_stats)
    stats = PushStats()
    for name, value in raw.items():
        name = name.decode() if isinstance(name, bytes) else name
        value = value.decode() if isinstance(value, bytes) else value
        if name.startswith("count:"):
            _, kind, outcome = name.split(":", 2)
            stats.counts[(kind, outcome)] = int(value)
        elif name.startswith("le:"):
            stats.buckets[name[3:]] = int(value)
        elif name == "seconds_sum":
            stats.seconds_sum = float(value)
    return stats
