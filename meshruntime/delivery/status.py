"""What a subscription's delivery looks like from outside: a small status record per subscription.

Prometheus has the full picture, but the portal's subscription page must work without it (and
in embedded mode there is none), so runtimes also keep, every couple of seconds:

- ``<prefix>delivery:<subscription id>`` (hash): running totals ``delivered``,
  ``dead_lettered``, ``filtered``, ``retries`` (summed over the runtimes), and the latest
  ``last_error`` / ``last_error_status`` / ``last_error_at`` and ``last_delivered_at`` (epoch ms),
  and while the access policy holds the subscription's delivery, ``held`` (why:
  ``subscribe denied by rule rule-7 (deny orders.*)``) and ``held_since`` (epoch ms), removed
  when it resumes;
- ``<prefix>delivery:<subscription id>:m:<epoch minute>`` (integer, one hour TTL): events
  delivered in that minute, for the delivery rate.

Written in one pipelined round trip for all subscriptions; best effort (a lost update is a
gap in a figure, never a lost event). The portal reads them through
:mod:`meshruntime.delivery_admin`; both take the names from :mod:`meshruntime.keys`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from meshruntime.keys import KeySpace

__all__ = ["MINUTE_TTL_SECONDS", "StatusReport"]

MINUTE_TTL_SECONDS = 3600


@dataclass(slots=True)
class StatusReport:
    """What changed since the last write; the worker adds, the manager writes and resets."""

    delivered: int = 0
    dead_lettered: int = 0
    filtered: int = 0
    retries: int = 0
    minutes: dict[int, int] | None = None  # epoch minute -> delivered
    last_error: str | None = None
    last_error_status: int | None = None
    last_error_at: int | None = None
    last_delivered_at: int | None = None
    held: str | None = None  # None: unchanged; "": no longer held; else why it is held now

    def count_delivered(self) -> None:
        now = time.time()
        self.delivered += 1
        self.last_delivered_at = int(now * 1000)
        minute = int(now // 60)
        if self.minutes is None:
            self.minutes = {}
        self.minutes[minute] = self.minutes.get(minute, 0) + 1

    def error(self, text: str | None, status: int | None) -> None:
        self.last_error = text or ""
        self.last_error_status = status
        self.last_error_at = int(time.time() * 1000)

    def hold(self, reason: str | None) -> None:
        """Say whether the policy holds the subscription now (``reason``) or not (None)."""
        self.held = reason or ""

    def empty(self) -> bool:
        return not (self.delivered or self.dead_lettered or self.filtered or self.retries
                    or self.last_error_at is not None or self.held is not None)

    def write(self, pipe, keys: KeySpace, subscription_id: str) -> None:
        key = keys.delivery(subscription_id)
        for name in ("delivered", "dead_lettered", "filtered", "retries"):
            value = getattr(self, name)
            if value:
                pipe.hincrby(key, name, value)
        fields: dict[str, str | int] = {}
        if self.last_delivered_at is not None:
            fields["last_delivered_at"] = self.last_delivered_at
        if self.last_error_at is not None:
            fields.update(last_error=self.last_error or "", last_error_at=self.last_error_at,
                          last_error_status="" if self.last_error_status is None else self.last_error_status)
        if self.held:
            fields["held"] = self.held
            pipe.hsetnx(key, "held_since", int(time.time() * 1000))
        elif self.held == "":
            pipe.hdel(key, "held", "held_since")
        if fields:
            pipe.hset(key, mapping=fields)
        for minute, count in (self.minutes or {}).items():
            mkey = keys.delivery_minute(subscription_id, minute)
            pipe.incrby(mkey, count)
            pipe.expire(mkey, MINUTE_TTL_SECONDS)

    def merge(self, other: StatusReport) -> None:
        """Put back an update that could not be written (the next write carries it)."""
        self.delivered += other.delivered
        self.dead_lettered += other.dead_lettered
        self.filtered += other.filtered
        self.retries += other.retries
        for minute, count in (other.minutes or {}).items():
            if self.minutes is None:
                self.minutes = {}
            self.minutes[minute] = self.minutes.get(minute, 0) + count
        if other.last_error_at is not None and (self.last_error_at or 0) < other.last_error_at:
            self.last_error, self.last_error_status = other.last_error, other.last_error_status
            self.last_error_at = other.last_error_at
        if other.last_delivered_at is not None and (self.last_delivered_at or 0) < other.last_delivered_at:
            self.last_delivered_at = other.last_delivered_at
        if self.held is None:  # a newer say on the hold wins
            self.held = other.held
