"""A member of a subscription's consumer group on Redis Streams (see :class:`~.base.GroupConsumer`).

A subscription reads two streams with a group named by its id: the topic, and its redelivery
stream, where the portal puts dead letters back for this subscription alone. Redis keeps, for
every entry a member has read and not acknowledged, who holds it, since when, and how often it
was delivered; that is the lease and the attempt count:

- *renew* is ``XCLAIM ... JUSTID`` to the holder itself, which resets the idle time (so a live
  runtime's events are never taken over) and, with ``RETRYCOUNT``, sets the delivery count to
  the attempt number. Every read or claim adds one to that count, so whoever acquires an entry
  knows ``attempts made = delivery count - 1``, across crashes and runtimes, with no extra keys;
- *claim_stale* is ``XAUTOCLAIM`` of entries idle longer than the visibility timeout, with a
  cursor kept per stream so that successive calls sweep the whole pending list;
- what a member left pending under its own name (a restart) is read back first, a page at a
  time, before anything new, so that the pending list stops growing and the recovery ends;
- dead letters put back are looked for before new events, at most every ``redeliver_poll_s``
  while the topic keeps the member busy (each look is a round trip), and on every idle read.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from redis.exceptions import RedisError

from .base import Held, StoredEntry, StoreError

if TYPE_CHECKING:
    from .redis_streams import RedisStreamsStore

EVENT_FIELD = b"event"
SOURCES = ("topic", "redeliver")


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def id_key(entry_id: str) -> tuple[int, int]:
    """A stream id as a sortable pair (``"10-2"`` sorts before ``"9-1"`` as a string)."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


class RedisGroupConsumer:
    orders_itself = False  # members take turns by the mesh's lease (delivery/lock.py)
    redeliver_poll_s = 1.0  # dead letters put back are looked for at most this often while busy

    def __init__(self, store: RedisStreamsStore, topic: str, group: str, name: str) -> None:
        self.store = store
        self.client = store.client
        self.topic = topic
        self.group = group
        self.name = name
        self._keys = {"topic": store.stream_key(topic), "redeliver": store.redeliver_key(group)}
        self._recover_after: dict[str, str | None] = dict.fromkeys(SOURCES, "0")
        self._claim_cursor: dict[str, str] = dict.fromkeys(SOURCES, "0-0")
        self._held: set[tuple[str, str]] = set()
        self._next_redeliver_read = 0.0

    # -- reading -------------------------------------------------------------------------------
    async def read(self, count: int, block_ms: int | None = None) -> list[Held]:
        for source in SOURCES:  # own pending first, until both streams are read to their end
            after = self._recover_after[source]
            if after is None:
                continue
            held, next_after = await self._own_pending(source, after, count)
            self._recover_after[source] = next_after
            if held:
                return held
        now = time.monotonic()
        if now >= self._next_redeliver_read:  # a round trip of its own: not on every read of a busy topic
            self._next_redeliver_read = now + self.redeliver_poll_s
            held = await self._read_new("redeliver", count, None)
            if held:
                self._next_redeliver_read = 0.0  # there may be more: read on until none is left
                return held
        held = await self._read_new("topic", count, block_ms)
        if not held and block_ms is not None:
            self._next_redeliver_read = 0.0  # idle: put-back dead letters are looked at every block
        return held

    async def _read_new(self, source: str, count: int, block_ms: int | None) -> list[Held]:
        if source == "topic":
            entries = await self.store.read_group(self.topic, self.group, self.name, count, block_ms)
        else:
            try:
                response = await self.client.xreadgroup(self.group, self.name, {self._keys[source]: ">"},
                                                        count=count)
            except RedisError as error:
                raise StoreError(f"{self.store.label}: read failed: {error}") from error
            entries = [StoredEntry(_s(i), self.topic, f[EVENT_FIELD], id_key(_s(i))[0])
                       for _key, items in response or () for i, f in items if f]
        held = [Held(entry, 0, source) for entry in entries]
        self._held.update(h.key for h in held)
        return held

    async def _own_pending(self, source: str, after: str, count: int) -> tuple[list[Held], str | None]:
        try:
            response = await self.client.xreadgroup(self.group, self.name, {self._keys[source]: after},
                                                    count=count)
        except RedisError as error:
            raise StoreError(f"{self.store.label}: read failed: {error}") from error
        items = [item for _key, rows in response or () for item in rows]
        if not items:
            return [], None
        entries, missing = [], []
        for entry_id, fields in items:
            entry_id = _s(entry_id)
            if (source, entry_id) in self._held:
                continue  # still held here (a release rewinds the recovery; see release)
            if fields:
                entries.append(StoredEntry(entry_id, self.topic, fields[EVENT_FIELD], id_key(entry_id)[0]))
            else:
                missing.append(entry_id)
        return await self._with_attempts(source, entries, missing), _s(items[-1][0])

    async def claim_stale(self, count: int) -> list[Held]:
        min_idle_ms = int(self.store.visibility_timeout_s * 1000)
        out: list[Held] = []
        for source in SOURCES:
            cursor, entries, missing = await self._autoclaim(source, min_idle_ms, self._claim_cursor[source], count)
            self._claim_cursor[source] = cursor
            out += await self._with_attempts(source, entries, missing)
        return out

    async def take_over(self, count: int) -> list[Held]:
        out: list[Held] = []
        for source in SOURCES:
            cursor, entries, missing = "0-0", [], []
            while True:
                cursor, more, gone = await self._autoclaim(source, 0, cursor, count)
                entries += more
                missing += gone
                if cursor == "0-0":
                    break
            out += await self._with_attempts(source, entries, missing)
        return sorted(out, key=lambda h: (h.source != "topic", id_key(h.entry.id)))

    async def _autoclaim(self, source: str, min_idle_ms: int, cursor: str,
                         count: int) -> tuple[str, list[StoredEntry], list[str]]:
        try:
            response = await self.client.xautoclaim(self._keys[source], self.group, self.name, min_idle_ms,
                                                    start_id=cursor, count=count)
        except RedisError as error:
            raise StoreError(f"{self.store.label}: claim failed: {error}") from error
        entries, missing = [], []
        lost = False
        for entry_id, fields in response[1]:
            if entry_id is None:  # Redis 6.2 claims a trimmed entry but answers nil for it
                lost = True
            elif fields:
                entry_id = _s(entry_id)
                entries.append(StoredEntry(entry_id, self.topic, fields[EVENT_FIELD], id_key(entry_id)[0]))
            else:
                missing.append(_s(entry_id))
        if len(response) > 2:  # Redis 7 removes trimmed entries from the pending list and lists them
            missing.extend(_s(i) for i in response[2] or ())
        if lost:  # 6.2: they are ours now; the own-pending pass finds them without their event
            self._recover_after[source] = "0"
        return _s(response[0]), entries, missing

    async def _with_attempts(self, source: str, entries: list[StoredEntry], missing: list[str]) -> list[Held]:
        """Attach attempts already made (delivery count - 1) to entries just acquired."""
        ids = [e.id for e in entries] + missing
        if not ids:
            return []
        ordered = sorted(ids, key=id_key)
        try:
            rows = await self.client.xpending_range(self._keys[source], self.group, min=ordered[0],
                                                    max=ordered[-1], count=len(ids) + 1000,
                                                    consumername=self.name)
        except RedisError as error:
            raise StoreError(f"{self.store.label}: pending failed: {error}") from error
        counts = {_s(r["message_id"]): int(r["times_delivered"]) for r in rows}
        held = [Held(e, max(0, counts.get(e.id, 1) - 1), source) for e in entries]
        held += [Held(StoredEntry(i, self.topic, b""), max(0, counts.get(i, 1) - 1), source, missing=True)
                 for i in missing]
        self._held.update(h.key for h in held)
        return held

    # -- holding ---------------------------------------------------------------------------------
    async def renew(self, held: Sequence[Held], *, attempts: int | None = None) -> None:
        for source, ids in _by_source(held).items():
            try:
                await self.client.xclaim(self._keys[source], self.group, self.name, 0, ids,
                                         retrycount=attempts, justid=True)
            except RedisError as error:
                raise StoreError(f"{self.store.label}: renew failed: {error}") from error

    async def release(self, held: Sequence[Held]) -> None:
        """Stop holding ``held`` without a verdict (a pause): this member reads them back first,
        on its next read (and another member takes them over after the visibility timeout)."""
        for h in held:
            self._held.discard(h.key)
            self._recover_after[h.source] = "0"

    async def ack(self, held: Sequence[Held]) -> None:
        for source, ids in _by_source(held).items():
            if source == "topic":
                await self.store.ack(self.topic, self.group, ids)
            else:
                try:
                    await self.client.xack(self._keys[source], self.group, *ids)
                except RedisError as error:
                    raise StoreError(f"{self.store.label}: ack failed: {error}") from error
        self._held.difference_update(h.key for h in held)

    async def dead_letter(self, held: Held, reason: str, status: int | None, attempts: int) -> str:
        dlq_id = await self.store.dead_letter(self.group, held.entry, reason, status, attempts,
                                              stream_key=self._keys[held.source])
        self._held.discard(held.key)
        return dlq_id

    async def close(self) -> None:
        self._held.clear()


def _by_source(held: Sequence[Held]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for h in held:
        out.setdefault(h.source, []).append(h.entry.id)
    return out
