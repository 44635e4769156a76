"""The portal's window on a subscription's delivery: what it looks like, and the operator's actions.

This is the public API the portal (subscriptions/delivery.py) reads delivery state through;
the runtime's delivery engine (:mod:`meshruntime.delivery`) is not, and importing this module
does not load it. Synchronous (redis-py), Django-free, so that the portal and the fault tests
do exactly the same thing. Keys are those of docs/meshconfig.md (:mod:`meshruntime.keys`):

- state: the consumer group on ``<prefix>topic:<topic>`` (lag, pending: see
  :mod:`meshruntime.consumer_groups`), the dead-letter stream ``<prefix>dlq:<id>`` (length), the
  runtimes' status record ``<prefix>delivery:<id>`` (see :mod:`meshruntime.delivery.status`),
  including whether the access policy holds its delivery and why;
- redeliver: dead letters move to ``<prefix>redeliver:<id>``, which only this subscription's
  runtimes read, and leave the dead-letter stream, in one atomic script per batch (two operators
  pressing "redeliver all" at once put each event back once);
- skip to now: the group moves to the end of the topic and its pending entries are acknowledged,
  so nothing older is delivered (attempts already under way in a runtime finish).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson
import redis

from meshruntime.cloudevents import loads
from meshruntime.consumer_groups import GROUPS_SCRIPT, LAG_SCAN_CAP, REDELIVER_SCRIPT, ConsumerGroup, parse_groups
from meshruntime.keys import DEFAULT_PREFIX, KeySpace

__all__ = ["DeadLetter", "DeliveryOperations", "DeliveryState", "SkipResult"]

_PAGE = 500



def _s(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else value


def _ms_to_datetime(ms: int | str | None) -> datetime | None:
    if ms in (None, "", b""):
        return None
    return datetime.fromtimestamp(int(ms) / 1000, UTC)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    id: str
    event: bytes
    reason: str
    status: int | None
    attempts: int
    source_id: str
    at: datetime | None

    @property
    def attributes(self) -> dict:
        """The event's attributes (data left out), or {} when the event is gone or unreadable."""
        try:
            value = loads(self.event)
        except orjson.JSONDecodeError:
            return {}
        if not isinstance(value, dict):
            return {}
        return {k: v for k, v in value.items() if k not in ("data", "data_base64")}

    @property
    def event_id(self) -> str:
        return str(self.attributes.get("id", ""))

    @property
    def reason_code(self) -> str:
        return self.reason.split(":", 1)[0]

    @classmethod
    def from_row(cls, entry_id: bytes | str, fields: dict) -> DeadLetter:
        status = _s(fields.get(b"status"))
        return cls(
            id=_s(entry_id), event=fields.get(b"event", b""), reason=_s(fields.get(b"reason")),
            status=int(status) if status.isdigit() else None,
            attempts=int(_s(fields.get(b"attempts")) or 0), source_id=_s(fields.get(b"source_id")),
            at=_ms_to_datetime(_s(fields.get(b"at")) or None),
        )


@dataclass(frozen=True, slots=True)
class DeliveryState:
    group_exists: bool
    lag: int | None  # None: more than LAG_SCAN_CAP, or unknown
    pending: int | None  # None: only the group's members know (Kafka; its lag counts them)
    consumers: int | None  # None: the engine does not track members (NATS)
    dead_letters: int
    redelivery_waiting: int  # put back, not yet delivered
    delivered: int
    dead_lettered: int
    filtered: int
    retries: int
    rate_per_second: float  # over the last minute and the current one
    last_error: str
    last_error_status: int | None
    last_error_at: datetime | None
    last_delivered_at: datetime | None
    held: str = ""  # why the runtimes hold its delivery (the access policy), "" when they do not
    held_since: datetime | None = None


@dataclass(frozen=True, slots=True)
class SkipResult:
    skipped: int | None  # events never delivered (the lag), None when too many to count
    acknowledged: int  # pending entries acknowledged without delivery


class DeliveryOperations:
    """One subscription's delivery state and actions, on the Redis ``client`` under ``prefix``."""

    def __init__(self, client: redis.Redis, prefix: str = DEFAULT_PREFIX) -> None:
        self.client = client
        self.prefix = prefix
        self.keys = KeySpace(prefix)
        self._redeliver = client.register_script(REDELIVER_SCRIPT)
        self._groups = client.register_script(GROUPS_SCRIPT)

    def topic_key(self, topic: str) -> str:
        return self.keys.topic(topic)

    def dlq_key(self, subscription_id: str) -> str:
        return self.keys.dlq(subscription_id)

    def redeliver_key(self, subscription_id: str) -> str:
        return self.keys.redeliver(subscription_id)

    # -- reading ---------------------------------------------------------------------------------
    def _group(self, key: str, group: str) -> ConsumerGroup | None:
        try:
            rows = parse_groups(self._groups(keys=[key], args=[LAG_SCAN_CAP]))
        except redis.ResponseError:  # no such stream
            return None
        for row in rows:
            if row.name == group:
                return row
        return None

    def state(self, subscription_id: str, topic: str) -> DeliveryState:
        """The state of a subscription whose topic lives on this Redis."""
        row = self._group(self.topic_key(topic), subscription_id)
        redeliver = self._group(self.redeliver_key(subscription_id), subscription_id)
        pipe = self.client.pipeline(transaction=False)
        pipe.xlen(self.dlq_key(subscription_id))
        pipe.xlen(self.redeliver_key(subscription_id))
        dlq_length, redeliver_length = pipe.execute()
        waiting = 0
        if redeliver is not None:
            waiting = redeliver.pending + (redeliver.lag or 0)
        elif redeliver_length:
            waiting = int(redeliver_length)
        return self.state_with(subscription_id, row, dead_letters=int(dlq_length), redelivery_waiting=waiting)

    def state_with(self, subscription_id: str, row, *, dead_letters: int, redelivery_waiting: int = 0) -> DeliveryState:
        """The state of a subscription whose group ``row`` (a consumer group's figures: ``lag``,
        ``pending``, ``consumers``; None when there is none) and dead letters were read from its
        topic's engine; the runtimes' status record is read here, in the mesh's Redis."""
        minute = int(time.time() // 60)
        pipe = self.client.pipeline(transaction=False)
        pipe.hgetall(self.keys.delivery(subscription_id))
        pipe.mget(self.keys.delivery_minute(subscription_id, minute - 1),
                  self.keys.delivery_minute(subscription_id, minute))
        status, minutes = pipe.execute()
        status = {_s(k): _s(v) for k, v in status.items()}
        recent = sum(int(m) for m in minutes if m is not None)
        elapsed = 60 + time.time() % 60
        error_status = status.get("last_error_status", "")
        return DeliveryState(
            group_exists=row is not None,
            lag=row.lag if row is not None else None,
            pending=row.pending if row is not None else 0,
            consumers=row.consumers if row is not None else 0,
            dead_letters=dead_letters,
            redelivery_waiting=redelivery_waiting,
            delivered=int(status.get("delivered", 0)),
            dead_lettered=int(status.get("dead_lettered", 0)),
            filtered=int(status.get("filtered", 0)),
            retries=int(status.get("retries", 0)),
            rate_per_second=recent / elapsed,
            last_error=status.get("last_error", ""),
            last_error_status=int(error_status) if error_status.isdigit() else None,
            last_error_at=_ms_to_datetime(status.get("last_error_at")),
            last_delivered_at=_ms_to_datetime(status.get("last_delivered_at")),
            held=status.get("held", ""),
            held_since=_ms_to_datetime(status.get("held_since")),
        )

    def dead_letters(self, subscription_id: str, *, count: int = 50, before: str | None = None) -> list[DeadLetter]:
        """Newest first; ``before`` (an id) gives the next page."""
        rows = self.client.xrevrange(self.dlq_key(subscription_id), max=f"({before}" if before else "+",
                                     min="-", count=count)
        return [DeadLetter.from_row(entry_id, fields) for entry_id, fields in rows]

    def dead_letter(self, subscription_id: str, dlq_id: str) -> DeadLetter | None:
        rows = self.client.xrange(self.dlq_key(subscription_id), min=dlq_id, max=dlq_id)
        return DeadLetter.from_row(*rows[0]) if rows else None

    # -- actions ---------------------------------------------------------------------------------
    def redeliver(self, subscription_id: str, ids: list[str] | None, *, by: str) -> int:
        """Put dead letters back for this subscription only: the given ids, or all (``None``)."""
        dlq = self.dlq_key(subscription_id)
        target = self.redeliver_key(subscription_id)
        if ids is not None:
            moved = 0
            for start in range(0, len(ids), _PAGE):
                moved += int(self._redeliver(keys=[dlq, target], args=[by, *ids[start:start + _PAGE]]))
            return moved
        moved = 0
        after = "-"
        while True:
            rows = self.client.xrange(dlq, min=after, max="+", count=_PAGE)
            if not rows:
                return moved
            page = [_s(entry_id) for entry_id, _fields in rows]
            moved += int(self._redeliver(keys=[dlq, target], args=[by, *page]))
            after = f"({page[-1]}"

    def skip_to_now(self, subscription_id: str, topic: str) -> SkipResult:
        """Move the group to the end of the topic and acknowledge its pending entries."""
        key = self.topic_key(topic)
        row = self._group(key, subscription_id)
        if row is None:
            return SkipResult(0, 0)
        skipped = row.lag
        # to the last event now, by id: events published from here on are delivered, and the
        # pending entries acknowledged below are only those up to it
        last = _s(self.client.xinfo_stream(key)["last-generated-id"])
        self.client.xgroup_setid(key, subscription_id, last)
        acknowledged = 0
        while True:
            pending = self.client.xpending_range(key, subscription_id, min="-", max=last, count=_PAGE)
            if not pending:
                return SkipResult(skipped, acknowledged)
            acknowledged += int(self.client.xack(key, subscription_id, *[p["message_id"] for p in pending]))
