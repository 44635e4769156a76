"""The event store seen by the runtime: one small interface, several engines behind it.

The publish path only appends; the delivery path (consumer groups, retries, dead letters) uses
the rest. Everything the runtime needs from an engine is here, so that a new engine (NATS
JetStream, Kafka, ...) is one module implementing :class:`Store` and nothing else changes.

Events cross this boundary as bytes: the structured-mode CloudEvent JSON (binary data as
``data_base64``), produced by :mod:`meshruntime.cloudevents`. The store never parses them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol, runtime_checkable


class StoreError(Exception):
    """The engine failed or could not be reached; the operation may succeed if retried."""


@dataclass(frozen=True, slots=True)
class Retention:
    """How long a topic keeps its events: whichever limit is reached first wins; ``None`` = no limit."""

    max_length: int | None = None
    max_age_seconds: int | None = None

    @classmethod
    def from_config(cls, retention: dict | None) -> Retention:
        retention = retention or {}
        return cls(retention.get("max_length"), retention.get("max_age_seconds"))

    @property
    def unlimited(self) -> bool:
        return self.max_length is None and self.max_age_seconds is None


NO_RETENTION = Retention()


class AppendEntry(NamedTuple):
    """One event to append to one topic. (A tuple: the publish path builds one per event.)"""

    topic: str
    event: bytes  # structured-mode CloudEvent JSON
    retention: Retention = NO_RETENTION


class JourneyStep(NamedTuple):
    """One step of an event's journey (``mesh:journey:<event id>``): a JSON object as bytes."""

    event_id: str
    step: bytes


@dataclass(frozen=True, slots=True)
class StoredEntry:
    """An event as read back from the store, with the position the store gave it."""

    id: str  # the engine's position, e.g. a Redis stream id "1732800000000-0"
    topic: str
    event: bytes
    time_ms: int | None = None  # when the store appended it, by the engine's clock (range reads)


@dataclass(frozen=True, slots=True)
class ClaimResult:
    """What :meth:`Store.claim_stale` took over from idle consumers.

    ``missing_ids`` are pending entries whose event no longer exists (trimmed by retention
    before they were acknowledged); they stay pending until the caller acks or dead-letters them,
    so that their loss is recorded rather than silent.
    """

    entries: list[StoredEntry] = field(default_factory=list)
    missing_ids: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class PendingEntry:
    """One delivered-but-unacknowledged entry of a consumer group."""

    id: str
    consumer: str
    idle_ms: int
    deliveries: int


@dataclass(frozen=True, slots=True)
class GroupInfo:
    """The state of one consumer group (one subscription) on one topic."""

    name: str
    consumers: int
    pending: int  # delivered, not yet acknowledged
    last_delivered_id: str
    lag: int | None  # entries not yet delivered to the group; None when the engine cannot tell


@runtime_checkable
class Store(Protocol):
    """An event store engine. All methods are coroutines and raise :class:`StoreError` on failure."""

    async def append_many(
        self, entries: Sequence[AppendEntry], *, journey: Sequence[JourneyStep] = ()
    ) -> list[str]:
        """Append events in one round trip, in order; return their ids in the same order.

        ``journey`` steps are recorded in the same round trip when the engine can (Redis), so
        tracing an event costs no extra latency.
        """
        ...

    async def record_journey(self, steps: Sequence[JourneyStep]) -> None:
        """Record journey steps on their own (denials, delivery attempts, acks, dead letters)."""
        ...

    async def ensure_group(self, topic: str, group: str, start_id: str = "$") -> bool:
        """Create the consumer group if missing (``$`` = new events only, ``0`` = from the start).

        Returns True when it was created, False when it already existed.
        """
        ...

    async def remove_group(self, topic: str, group: str) -> bool:
        """Delete a consumer group and its pending entries (a revoked subscription)."""
        ...

    async def read_group(
        self, topic: str, group: str, consumer: str, count: int, block_ms: int | None = None,
        *, pending: bool = False,
    ) -> list[StoredEntry]:
        """Read new events for ``consumer`` (``pending=True``: re-read its own unacknowledged ones)."""
        ...

    async def ack(self, topic: str, group: str, ids: Sequence[str]) -> int:
        """Acknowledge delivered entries; returns how many were pending."""
        ...

    async def claim_stale(
        self, topic: str, group: str, consumer: str, min_idle_ms: int, count: int
    ) -> ClaimResult:
        """Take over entries other consumers left pending for at least ``min_idle_ms``."""
        ...

    async def pending(
        self, topic: str, group: str, count: int, *, consumer: str | None = None, min_idle_ms: int = 0
    ) -> list[PendingEntry]:
        """List pending entries with their delivery counts (for attempt accounting)."""
        ...

    async def dead_letter(
        self, subscription_id: str, entry: StoredEntry, reason: str, status: int | None, attempts: int,
        *, ack: bool = True,
    ) -> str:
        """Move an entry to the subscription's dead-letter stream and (by default) ack it, atomically."""
        ...

    async def trim(self, topic: str, retention: Retention) -> int:
        """Apply a topic's retention now; returns how many entries were removed."""
        ...

    async def group_info(self, topic: str, group: str) -> GroupInfo | None:
        """The group's lag and pending count, or None when the group does not exist."""
        ...

    async def groups(self, topic: str) -> list[GroupInfo]:
        """Every consumer group of a topic."""
        ...

    async def read_range(
        self, topic: str, *, count: int = 100, newest_first: bool = False, after: str | None = None,
        before: str | None = None, from_ms: int | None = None, to_ms: int | None = None,
    ) -> list[StoredEntry]:
        """At most ``count`` events of a topic, oldest or newest first: those after and before the
        positions given (both exclusive) and appended in ``[from_ms, to_ms)``, with ``time_ms``
        set. The event browser's read: never more than ``count``, so a page costs what it shows;
        around a time T is ``to_ms=T, newest_first=True`` and ``from_ms=T``."""
        ...

    async def length(self, topic: str) -> int:
        """How many events the topic holds."""
        ...

    async def ping(self) -> bool:
        """True when the engine answers (readiness)."""
        ...

    async def close(self) -> None:
        ...
