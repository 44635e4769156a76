"""The event store seen by the runtime: one small interface, several engines behind it.

The publish path only appends; the delivery path reads through a :class:`GroupConsumer`, one
per subscription and runtime, which holds events (a lease the engine keeps: a Redis pending
entry, a JetStream ack-wait, a Kafka partition) until they are acknowledged or dead-lettered.
Everything the runtime needs from an engine is here, so that a new engine is one module
implementing :class:`Store` and nothing else changes; ``tests/stores/`` is the conformance
suite a new engine must pass, and ``docs/stores.md`` says how each engine maps the interface.

Why a consumer object rather than calls that name a group and a consumer: engines that are not
Redis keep state per member of a group (a Kafka consumer in a group, a NATS pull subscription,
offsets not yet committable), which a stateless call cannot carry. What delivery needs across
engines is the same: *read* what this member should deliver now (with the attempts already
made on it), *renew* what it holds (and record an attempt count for whoever takes it over),
*ack* or *dead-letter* it. Taking over a dead member's events is explicit on Redis
(:meth:`GroupConsumer.claim_stale`) and done by the server on NATS and Kafka, where ``read``
returns them.

Events cross this boundary as bytes: the structured-mode CloudEvent JSON (binary data as
``data_base64``), produced by :mod:`meshruntime.cloudevents`. The store never parses them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol, runtime_checkable
from urllib.parse import urlsplit, urlunsplit


class StoreError(Exception):
    """The engine failed or could not be reached; the operation may succeed if retried."""


def redact(url: str) -> str:
    """A connection URL fit for an error message or a log: any password replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname or ''}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


class StoreUnsupported(StoreError):
    """The engine cannot do this at all (MQTT keeps no events to read back); never retried."""


class HeldLost(StoreError):
    """Events this member held are no longer its own (a Kafka partition moved to another member
    in a rebalance): their acknowledgement cannot land here, and need not be retried, since the
    new holder delivers them again. ``ids`` are their positions; the rest of the call succeeded."""

    def __init__(self, message: str, ids: Sequence[str]) -> None:
        super().__init__(message)
        self.ids = list(ids)


def position_key(position: str) -> tuple[int, ...]:
    """An engine's position as a sortable tuple, in the order the engine gives them: Redis
    ``"ms-seq"``, Kafka ``"partition-offset"``, NATS ``"sequence"`` (``"10-2"`` sorts before
    ``"9-1"`` as a string, not as a position)."""
    return tuple(int(part) for part in position.split("-"))


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

    id: str  # the engine's position: Redis "1732800000000-0", NATS "42" (stream sequence), Kafka "0-17"
    topic: str
    event: bytes
    time_ms: int | None = None  # when the store appended it, by the engine's clock


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
    consumers: int | None  # members reading now; None when the engine does not track them (NATS)
    pending: int | None  # delivered, not yet acknowledged; None when only members know (Kafka)
    last_delivered_id: str
    lag: int | None  # entries not yet delivered to the group; None when the engine cannot tell


@dataclass(slots=True, eq=False)
class Held:
    """An event a :class:`GroupConsumer` holds: delivered to it, not yet acked or dead-lettered.

    ``attempts`` are the attempts already made on it, by any runtime, as far as the engine keeps
    count (see docs/stores.md); ``source`` tells a topic's event from a dead letter put back for
    this subscription (``redeliver``), whose ids live in another sequence. ``missing`` marks an
    entry whose event retention removed before it was acknowledged: it must be dead-lettered,
    so that its loss is recorded. ``token`` is the engine's own handle (a NATS message).
    """

    entry: StoredEntry
    attempts: int = 0
    source: str = "topic"
    missing: bool = False
    token: Any = None

    @property
    def key(self) -> tuple[str, str]:
        return self.source, self.entry.id


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One entry of a subscription's dead letters: the event and why it could not be delivered."""

    id: str  # its position among the subscription's dead letters
    topic: str
    event: bytes
    reason: str
    status: int | None
    attempts: int
    source_id: str  # the event's position in the topic
    at_ms: int


GROUP_START_NEW = "$"  # a new group delivers events appended after it was created
GROUP_START_ALL = "0"  # ... every event the topic holds


class Journal(Protocol):
    """Where journey steps go when the engine is not the mesh's Redis (see :meth:`Store.append_many`)."""

    async def record_journey(self, steps: Sequence[JourneyStep]) -> None: ...


@runtime_checkable
class GroupConsumer(Protocol):
    """One member of a subscription's consumer group: what one runtime uses to deliver it.

    Everything it returns is *held* until :meth:`ack` or :meth:`dead_letter`; a runtime that dies
    holding events loses them to another member after the store's visibility timeout.

    ``orders_itself`` is True where the engine gives each partition to one member at a time
    (Kafka): members of an ordered subscription then need no lease of the mesh's own to take
    turns, and must not take one (the lease holder might not hold the partition).
    """

    orders_itself: bool

    async def read(self, count: int, block_ms: int | None = None) -> list[Held]:
        """Up to ``count`` events to deliver now, oldest first, waiting up to ``block_ms`` when
        there is none (None: do not wait). First what this member left unacknowledged under the
        same name (a restart), then dead letters put back for the subscription, then new events;
        on NATS and Kafka also events a dead member held (the server hands them back)."""
        ...

    async def claim_stale(self, count: int) -> list[Held]:
        """Events other members have held for longer than the visibility timeout (a dead
        runtime's), now held here. Engines whose server does this by itself return []."""
        ...

    async def take_over(self, count: int) -> list[Held]:
        """Every event other members hold, whatever its age, oldest first: for the runtime that
        has just become the only deliverer of an ordered subscription. [] where the engine
        itself serialises the group (Kafka: one member per partition)."""
        ...

    async def renew(self, held: Sequence[Held], *, attempts: int | None = None) -> None:
        """Keep holding ``held`` for another visibility timeout; with ``attempts``, record that
        this many attempts are made (or under way) on them, for whoever takes them over."""
        ...

    async def release(self, held: Sequence[Held]) -> None:
        """Stop holding ``held`` without a verdict (a pause, a stop): they are delivered again,
        to this member's next reads or, after the visibility timeout, to another member."""
        ...

    async def ack(self, held: Sequence[Held]) -> None:
        """Acknowledge delivered events: they are never delivered to this subscription again."""
        ...

    async def dead_letter(self, held: Held, reason: str, status: int | None, attempts: int) -> str:
        """Move an event to the subscription's dead letters and acknowledge it; returns its id there."""
        ...

    async def close(self) -> None:
        """Stop reading; events still held stay unacknowledged (another member takes them over)."""
        ...


@runtime_checkable
class Store(Protocol):
    """An event store engine. All coroutines raise :class:`StoreError` on failure.

    ``kind`` is the engine (``redis``, ``kafka``, ``nats``, ``mqtt``), ``name`` the store's name in
    the catalog (it names the store in every error), ``durable`` whether it keeps events (MQTT
    does not: it is a transport, see docs/stores.md).
    """

    kind: str
    name: str
    durable: bool

    async def connect(self) -> None:
        """Reach the server now: raises :class:`StoreError` naming the store when it cannot."""
        ...

    async def append_many(
        self, entries: Sequence[AppendEntry], *, journey: Sequence[JourneyStep] = ()
    ) -> list[str]:
        """Append events, in order, and return their ids in the same order once the engine has
        them (Redis: written; NATS: stored by the stream; Kafka: acknowledged by all in-sync
        replicas). ``journey`` steps are recorded in the same round trip on Redis, and passed to
        the store's :class:`Journal` by the others."""
        ...

    async def record_journey(self, steps: Sequence[JourneyStep]) -> None:
        """Record journey steps on their own (denials, delivery attempts, acks, dead letters)."""
        ...

    async def ensure_group(self, topic: str, group: str, start: str | int = GROUP_START_NEW) -> bool:
        """Create a subscription's consumer group if missing: from new events (``$``), from the
        first event the topic holds (``0``), or from events appended at or after ``start``
        milliseconds since the epoch. True when it was created, False when it existed."""
        ...

    async def remove_group(self, topic: str, group: str) -> bool:
        """Delete a consumer group, what it holds and its put-back dead letters (a revoked
        subscription); its dead letters stay for inspection. False when there was none."""
        ...

    def consumer(self, topic: str, group: str, name: str) -> GroupConsumer:
        """The member ``name`` (a runtime id, unique among live runtimes) of the group."""
        ...

    async def group_info(self, topic: str, group: str) -> GroupInfo | None:
        """The group's lag and pending count, or None when the group does not exist."""
        ...

    async def read_range(
        self, topic: str, *, count: int = 100, newest_first: bool = False, after: str | None = None,
        before: str | None = None, from_ms: int | None = None, to_ms: int | None = None,
    ) -> list[StoredEntry]:
        """At most ``count`` events of a topic, oldest or newest first: those after and before the
        positions given (both exclusive) and appended in ``[from_ms, to_ms)``. The event
        browser's read: around a time T is ``to_ms=T, newest_first=True`` and ``from_ms=T``."""
        ...

    async def dead_letters(self, group: str, *, count: int = 50, before: str | None = None) -> list[DeadLetter]:
        """A subscription's dead letters, newest first; ``before`` (an id) gives the next page."""
        ...

    async def redeliver(self, group: str, ids: Sequence[str] | None, *, by: str) -> int:
        """Put dead letters back, for this subscription only: the given ids, or all (None); they
        leave the dead letters. Returns how many were put back."""
        ...

    async def trim(self, topic: str, retention: Retention) -> int:
        """Apply a topic's retention now; returns how many events were removed, as far as known."""
        ...

    async def length(self, topic: str) -> int:
        """How many events the topic holds."""
        ...

    async def ping(self) -> bool:
        """True when the engine answers (readiness)."""
        ...

    async def close(self) -> None:
        ...
