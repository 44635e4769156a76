"""The two streams a subscription's worker consumes, behind one small interface.

- the topic (``<prefix>topic:<topic>``), through the :class:`~meshruntime.store.Store` interface;
- the subscription's redelivery stream (``<prefix>redeliver:<subscription id>``), where the
  portal puts dead letters back. Only this subscription's workers read it, so a redelivered
  event reaches this subscriber and no other, without touching the topic (whose other
  subscribers, retention and history stay as they were).

Both use a consumer group named by the subscription id and a consumer named by the runtime.

Two things the Store interface does not offer are done here on Redis directly, since they are
only needed by delivery: *leases* and *attempt counts*. A runtime keeps the entries it works on
(in flight, waiting for a retry) fresh with ``XCLAIM ... JUSTID`` so that a live runtime's work
is never taken over as if it had died, and before each retry it sets the entry's delivery count
to the attempt number (``RETRYCOUNT``). Every read or claim adds one to that count, so whoever
acquires an entry knows ``attempts made = delivery count - 1``, across crashes and runtimes,
with no extra keys. A second store engine would bring these two operations into its interface.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from meshruntime.store import GroupInfo, Store, StoredEntry, StoreError

__all__ = ["Acquired", "DeliveryStream", "RedeliveryStream", "TopicStream"]

EVENT_FIELD = b"event"


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


@dataclass(slots=True)
class Acquired:
    """Entries this consumer now holds: events with the attempts already made on them, and ids
    whose event is gone from the stream (trimmed by retention before delivery)."""

    entries: list[tuple[StoredEntry, int]]
    missing: list[tuple[str, int]]


class DeliveryStream:
    """What a worker does with one stream; Redis commands shared by both kinds live here."""

    kind = "topic"

    def __init__(self, client: aioredis.Redis, key: str, topic: str, group: str, consumer: str) -> None:
        self.client = client
        self.key = key
        self.topic = topic  # the subscription's topic, carried by every entry for journeys
        self.group = group
        self.consumer = consumer

    # -- overridden by the topic stream to go through the Store --------------------------------
    async def ensure_group(self, start_id: str) -> None:
        try:
            await self.client.xgroup_create(self.key, self.group, id=start_id, mkstream=True)
        except ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise StoreError(f"ensure_group failed: {error}") from error
        except RedisError as error:
            raise StoreError(f"ensure_group failed: {error}") from error

    async def read_new(self, count: int, block_ms: int | None) -> list[StoredEntry]:
        try:
            response = await self.client.xreadgroup(self.group, self.consumer, {self.key: ">"},
                                                    count=count, block=block_ms)
        except RedisError as error:
            raise StoreError(f"read failed: {error}") from error
        return [StoredEntry(_s(i), self.topic, f[EVENT_FIELD])
                for _key, items in response or () for i, f in items if f]

    async def ack(self, ids: Sequence[str]) -> None:
        if ids:
            try:
                await self.client.xack(self.key, self.group, *ids)
            except RedisError as error:
                raise StoreError(f"ack failed: {error}") from error

    async def _claim(self, min_idle_ms: int, count: int) -> tuple[list[StoredEntry], list[str]]:
        try:
            response = await self.client.xautoclaim(self.key, self.group, self.consumer, min_idle_ms,
                                                    start_id=self._cursor, count=count)
        except RedisError as error:
            raise StoreError(f"claim failed: {error}") from error
        self._cursor, entries, missing = self._claimed(response)
        return entries, missing

    def _claimed(self, response: Any) -> tuple[str, list[StoredEntry], list[str]]:
        """An XAUTOCLAIM reply as (next cursor, entries, ids of entries gone from the stream)."""
        entries, missing = [], []
        for entry_id, fields in response[1]:
            if entry_id is None:
                continue  # Redis 6.2 answers nil for a trimmed entry; own-pending recovery finds it
            if fields:
                entries.append(StoredEntry(_s(entry_id), self.topic, fields[EVENT_FIELD]))
            else:
                missing.append(_s(entry_id))
        if len(response) > 2:
            missing.extend(_s(i) for i in response[2] or ())
        return _s(response[0]), entries, missing

    _cursor = "0-0"

    async def dead_letter(self, dlq_key: str, entry: StoredEntry, reason: str, status: int | None,
                          attempts: int) -> None:
        fields = {b"event": entry.event, b"reason": reason, b"status": "" if status is None else str(status),
                  b"attempts": str(attempts), b"source_id": entry.id, b"at": str(int(time.time() * 1000))}
        pipe = self.client.pipeline(transaction=True)
        pipe.xadd(dlq_key, fields, maxlen=100_000, approximate=True)
        pipe.xack(self.key, self.group, entry.id)
        try:
            await pipe.execute()
        except RedisError as error:
            raise StoreError(f"dead_letter failed: {error}") from error

    async def info(self) -> GroupInfo | None:
        raise NotImplementedError

    async def remove(self) -> None:
        raise NotImplementedError

    # -- the same for both ----------------------------------------------------------------------
    async def claim_stale(self, min_idle_ms: int, count: int) -> tuple[Acquired, bool]:
        """Take over entries idle for ``min_idle_ms`` (a dead runtime's); True if there may be more."""
        entries, missing = await self._claim(min_idle_ms, count)
        acquired = await self._with_attempts(entries, missing)
        return acquired, len(entries) + len(missing) >= count

    async def claim_all(self, count: int) -> Acquired:
        """Take over every entry pending for other consumers, whatever its idle time, oldest first
        (the holder of an ordered subscription's lease, after a takeover)."""
        cursor, entries, missing = "0-0", [], []
        while True:
            try:
                response = await self.client.xautoclaim(self.key, self.group, self.consumer, 0,
                                                        start_id=cursor, count=count)
            except RedisError as error:
                raise StoreError(f"claim failed: {error}") from error
            cursor, more, gone = self._claimed(response)
            entries += more
            missing += gone
            if cursor == "0-0":
                return await self._with_attempts(entries, missing)

    async def read_own_pending(self, after: str, count: int) -> tuple[Acquired, str | None]:
        """This consumer's own pending entries after ``after`` (a restart under the same name, or
        what a pause left behind); returns them and the id to continue after, None at the end."""
        try:
            response = await self.client.xreadgroup(self.group, self.consumer, {self.key: after},
                                                    count=count)
        except RedisError as error:
            raise StoreError(f"read failed: {error}") from error
        items = [item for _key, rows in response or () for item in rows]
        if not items:
            return Acquired([], []), None
        entries, missing = [], []
        for entry_id, fields in items:
            if fields:
                entries.append(StoredEntry(_s(entry_id), self.topic, fields[EVENT_FIELD]))
            else:
                missing.append(_s(entry_id))
        acquired = await self._with_attempts(entries, missing)
        return acquired, _s(items[-1][0])

    async def _with_attempts(self, entries: list[StoredEntry], missing: list[str]) -> Acquired:
        """Attach attempts already made (delivery count - 1) to entries just acquired."""
        ids = [e.id for e in entries] + missing
        if not ids:
            return Acquired([], [])
        ordered = sorted(ids, key=id_key)
        try:
            rows = await self.client.xpending_range(self.key, self.group, min=ordered[0], max=ordered[-1],
                                                    count=len(ids) + 1000, consumername=self.consumer)
        except RedisError as error:
            raise StoreError(f"pending failed: {error}") from error
        counts = {_s(r["message_id"]): int(r["times_delivered"]) for r in rows}
        return Acquired([(e, max(0, counts.get(e.id, 1) - 1)) for e in entries],
                        [(i, max(0, counts.get(i, 1) - 1)) for i in missing])

    async def touch(self, ids: Sequence[str], *, attempts: int | None = None) -> None:
        """Renew the lease on entries this consumer holds; with ``attempts``, also record that
        many attempts as made (or under way) on them, for whoever takes them over after a crash."""
        if not ids:
            return
        try:
            await self.client.xclaim(self.key, self.group, self.consumer, 0, list(ids),
                                     retrycount=attempts, justid=True)
        except RedisError as error:
            raise StoreError(f"touch failed: {error}") from error


def id_key(entry_id: str) -> tuple[int, int]:
    """A stream id as a sortable pair (``"10-2"`` sorts before ``"9-1"`` as a string)."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


class TopicStream(DeliveryStream):
    """The topic's stream: reads, acks, claims, dead letters and group changes go through the Store."""

    kind = "topic"

    def __init__(self, store: Store, client: aioredis.Redis, key: str, topic: str, group: str,
                 consumer: str) -> None:
        super().__init__(client, key, topic, group, consumer)
        self.store = store

    async def ensure_group(self, start_id: str) -> None:
        await self.store.ensure_group(self.topic, self.group, start_id)

    async def read_new(self, count: int, block_ms: int | None) -> list[StoredEntry]:
        return await self.store.read_group(self.topic, self.group, self.consumer, count, block_ms)

    async def ack(self, ids: Sequence[str]) -> None:
        await self.store.ack(self.topic, self.group, ids)

    async def _claim(self, min_idle_ms: int, count: int) -> tuple[list[StoredEntry], list[str]]:
        result = await self.store.claim_stale(self.topic, self.group, self.consumer, min_idle_ms, count)
        return result.entries, result.missing_ids

    async def dead_letter(self, dlq_key: str, entry: StoredEntry, reason: str, status: int | None,
                          attempts: int) -> None:
        await self.store.dead_letter(self.group, entry, reason, status, attempts)

    async def info(self) -> GroupInfo | None:
        return await self.store.group_info(self.topic, self.group)

    async def remove(self) -> None:
        await self.store.remove_group(self.topic, self.group)


class RedeliveryStream(DeliveryStream):
    """``<prefix>redeliver:<subscription id>``: dead letters the portal put back, for this
    subscription only. Its group starts at ``0`` so that nothing put back before a runtime
    created the group is missed; a revoked subscription's stream is deleted with its group."""

    kind = "redeliver"

    async def info(self) -> GroupInfo | None:
        try:
            rows = await self.client.xinfo_groups(self.key)
        except ResponseError:
            return None
        except RedisError as error:
            raise StoreError(f"group_info failed: {error}") from error
        for row in rows:
            if _s(row["name"]) == self.group:
                lag = row.get("lag")
                return GroupInfo(self.group, int(row["consumers"]), int(row["pending"]),
                                 _s(row["last-delivered-id"]), None if lag is None else int(lag))
        return None

    async def remove(self) -> None:
        try:
            await self.client.delete(self.key)
        except RedisError as error:
            raise StoreError(f"remove failed: {error}") from error
