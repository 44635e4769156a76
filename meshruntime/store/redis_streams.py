"""The Redis Streams engine: one stream per topic, one consumer group per subscription.

Keys follow docs/meshconfig.md (built by :mod:`meshruntime.keys`): ``<prefix>topic:<topic>``
(field ``event``), ``<prefix>dlq:<subscription id>`` and ``<prefix>journey:<event id>``. Works
with Redis 6.2 (the embedded server) and 7.x; where 6.2 lacks a figure (group lag) it is
derived (:mod:`meshruntime.consumer_groups`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError, ResponseError

from meshruntime.consumer_groups import GROUPS_SCRIPT, LAG_SCAN_CAP, REDELIVER_SCRIPT, parse_groups
from meshruntime.keys import DEFAULT_PREFIX, KeySpace

from .base import (
    GROUP_START_ALL,
    GROUP_START_NEW,
    AppendEntry,
    ClaimResult,
    DeadLetter,
    GroupInfo,
    Journal,
    JourneyStep,
    PendingEntry,
    Retention,
    StoredEntry,
    StoreError,
    redact,
)
from .redis_group import RedisGroupConsumer, id_key
from .resp import REPLY_TIMEOUT_SECONDS, RespPool, bulk, command

EVENT_FIELD = b"event"
_PAGE = 500
_MAX_SEQ = 2**64 - 1  # the largest sequence number of a stream id


def make_client(url: str, **kwargs) -> aioredis.Redis:
    """A client that fails fast: a publish waiting 10 s on a dead Redis helps nobody (redis-py's
    default backoff); two quick retries ride over a reconnect, then the caller answers 503."""
    kwargs.setdefault("retry", Retry(ExponentialBackoff(cap=0.2, base=0.02), 2))
    kwargs.setdefault("socket_connect_timeout", 2)
    if not url.startswith("unix:"):
        kwargs.setdefault("socket_keepalive", True)
    kwargs.setdefault("health_check_interval", 30)
    return aioredis.Redis.from_url(url, **kwargs)


_bulk = bulk


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisStreamsStore:
    """:class:`~meshruntime.store.base.Store` on Redis Streams.

    ``approximate`` trimming (``~``) lets Redis trim whole macro-nodes, which is what keeps
    appends cheap; a stream may hold slightly more than ``max_length`` for a moment.
    """

    kind = "redis"
    durable = True

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        prefix: str = DEFAULT_PREFIX,
        journey_ttl_seconds: int = 86_400,
        dlq_max_length: int = 100_000,
        owns_client: bool = False,
        url: str | None = None,
        name: str = "default",
        visibility_timeout_s: float = 30.0,
        reply_timeout_s: float = REPLY_TIMEOUT_SECONDS,
        journal: Journal | None = None,
    ) -> None:
        """``journal``: where journey steps go when this Redis is not the mesh's (by default they
        go in the append's own round trip, here)."""
        self.client = client
        self.journal = journal
        self.name = name
        self.label = f"event store {name!r} (redis at {redact(url) if url else 'a given client'})"
        self.visibility_timeout_s = visibility_timeout_s
        # The append path's own connections (see resp.py); without a URL, redis-py's pipeline.
        # Their replies are due within reply_timeout_s (a blocked read: after its block time).
        self._resp = RespPool(url, reply_timeout=reply_timeout_s) if url is not None else None
        self.prefix = prefix
        self.keys = KeySpace(prefix)
        self._groups_script = client.register_script(GROUPS_SCRIPT)
        self.journey_ttl_ms = journey_ttl_seconds * 1000
        self.dlq_max_length = dlq_max_length
        self._owns_client = owns_client
        self._claim_cursors: dict[tuple[str, str], str] = {}
        self._prefixes: dict[tuple[str, int | None], bytes] = {}

    @classmethod
    def from_url(cls, url: str, **kwargs) -> RedisStreamsStore:
        try:
            return cls(make_client(url), owns_client=True, url=url, **kwargs)
        except ValueError as error:  # redis-py's words for a malformed URL, with the store named
            raise ValueError(f"event store {kwargs.get('name', 'default')!r}: {redact(url)!r} is not a usable "
                             f"Redis URL ({error})") from error

    # keys ---------------------------------------------------------------------------------
    def stream_key(self, topic: str) -> str:
        return self.keys.topic(topic)

    def dlq_key(self, subscription_id: str) -> str:
        return self.keys.dlq(subscription_id)

    def journey_key(self, event_id: str) -> str:
        return self.keys.journey(event_id)

    def redeliver_key(self, subscription_id: str) -> str:
        return self.keys.redeliver(subscription_id)

    async def connect(self) -> None:
        try:
            await self.client.ping()
        except (RedisError, OSError) as exc:
            raise StoreError(f"{self.label} cannot be reached: {exc}") from exc

    def consumer(self, topic: str, group: str, name: str) -> RedisGroupConsumer:
        return RedisGroupConsumer(self, topic, group, name)

    # publish ------------------------------------------------------------------------------
    # The append is the hot path: its commands are packed into RESP here, from per-topic
    # prefixes computed once, and written on one pooled connection. redis-py's pipeline would
    # encode every argument of every command again (several microseconds each), which at
    # thousands of events per second is most of the cost of an append.
    def _xadd_prefix(self, topic: str, retention: Retention, now_ms: int) -> bytes:
        if retention.max_length is None and retention.max_age_seconds is not None:
            # MINID and MAXLEN cannot share one XADD; age alone is applied here, both by trim(),
            # which the runtime runs periodically. MINID moves with time: not cached.
            minid = str(now_ms - retention.max_age_seconds * 1000).encode()
            return b"*8\r\n$4\r\nXADD\r\n" + _bulk(self.stream_key(topic).encode()) + \
                b"$5\r\nMINID\r\n$1\r\n~\r\n" + _bulk(minid) + b"$1\r\n*\r\n$5\r\nevent\r\n"
        cache_key = (topic, retention.max_length)
        prefix = self._prefixes.get(cache_key)
        if prefix is None:
            key = _bulk(self.stream_key(topic).encode())
            if retention.max_length is None:
                prefix = b"*5\r\n$4\r\nXADD\r\n" + key + b"$1\r\n*\r\n$5\r\nevent\r\n"
            else:
                prefix = b"*8\r\n$4\r\nXADD\r\n" + key + b"$6\r\nMAXLEN\r\n$1\r\n~\r\n" + \
                    _bulk(str(retention.max_length).encode()) + b"$1\r\n*\r\n$5\r\nevent\r\n"
            if len(self._prefixes) > 10_000:
                self._prefixes.clear()
            self._prefixes[cache_key] = prefix
        return prefix

    def _pack_journey(self, parts: list[bytes], steps: Sequence[JourneyStep]) -> int:
        """Append RPUSH + PEXPIRE per event to ``parts``; returns the number of commands.

        Steps of one event usually come together (the publish path writes them so); an event
        whose steps are split gets one RPUSH per run, which is still correct.
        """
        if not steps:
            return 0
        expire = b"$%d\r\n%d\r\n" % (len(str(self.journey_ttl_ms)), self.journey_ttl_ms)
        journey_key = self.keys.journey
        commands = 0
        run: list[bytes] = []
        current = None
        for event_id, step in (*steps, (None, b"")):
            if event_id != current:
                if run:
                    key = journey_key(current).encode()
                    key = b"$%d\r\n%s\r\n" % (len(key), key)
                    parts.append(b"*%d\r\n$5\r\nRPUSH\r\n%s" % (len(run) + 2, key))
                    parts.extend(run)
                    parts.append(b"*3\r\n$7\r\nPEXPIRE\r\n%s%s" % (key, expire))
                    commands += 2
                current = event_id
                run = []
            run.append(b"$%d\r\n%s\r\n" % (len(step), step))
        return commands

    async def _round_trip(self, packed: bytes, replies: int) -> list:
        """Send packed commands on one connection and read every reply (errors as values)."""
        if self._resp is not None:
            return await self._resp.request(packed, replies)
        return await self._redis_py_round_trip(packed, replies)

    async def _redis_py_round_trip(self, packed: bytes, replies: int) -> list:
        """Send packed commands on one of redis-py's pooled connections and read every reply.

        A connection that fails is dropped (never returned to the pool half-read). A failure
        while sending on a pooled connection (Redis restarted) is retried once on a new one;
        a failure after that is the caller's, since the commands may have run.
        """
        pool = self.client.connection_pool
        for attempt in (1, 2):
            connection = await pool.get_connection()
            sent = False
            try:
                await connection.send_packed_command(packed, check_health=False)
                sent = True
                out = []
                for _ in range(replies):
                    try:
                        out.append(await connection.read_response())
                    except ResponseError as error:
                        out.append(error)
                return out
            except BaseException as error:
                await connection.disconnect()
                if sent or attempt == 2 or not isinstance(error, RedisError | OSError):
                    raise
            finally:
                await pool.release(connection)
        raise AssertionError("unreachable")

    async def append_many(
        self, entries: Sequence[AppendEntry], *, journey: Sequence[JourneyStep] = ()
    ) -> list[str]:
        if not entries and not journey:
            return []
        now_ms = int(time.time() * 1000)
        parts: list[bytes] = []
        for entry in entries:
            parts.append(self._xadd_prefix(entry.topic, entry.retention, now_ms))
            parts.append(_bulk(entry.event))
        elsewhere, journey = (journey, ()) if self.journal is not None else ((), journey)
        commands = len(entries) + self._pack_journey(parts, journey)
        try:
            results = await self._round_trip(b"".join(parts), commands)
        except (RedisError, OSError) as exc:
            raise StoreError(f"append failed: {exc}") from exc
        ids = []
        for result in results[: len(entries)]:
            if isinstance(result, Exception):
                raise StoreError(f"append failed: {result}")
            ids.append(_s(result))
        if elsewhere:
            await self.journal.record_journey(elsewhere)
        return ids

    async def record_journey(self, steps: Sequence[JourneyStep]) -> None:
        if not steps:
            return
        if self.journal is not None:
            await self.journal.record_journey(steps)
            return
        parts: list[bytes] = []
        commands = self._pack_journey(parts, steps)
        try:
            await self._round_trip(b"".join(parts), commands)
        except (RedisError, OSError) as exc:
            raise StoreError(f"journey write failed: {exc}") from exc

    # consumer groups ----------------------------------------------------------------------
    async def ensure_group(self, topic: str, group: str, start_id: str | int = GROUP_START_NEW) -> bool:
        """Also creates the group on the subscription's redelivery stream (from its start)."""
        if isinstance(start_id, int):
            # a group's id counts as delivered: the last id of the millisecond before, so that the
            # events appended in the start's own millisecond (ids <ms>-0, <ms>-1, ...) are delivered
            start_id = f"{start_id - 1}-{_MAX_SEQ}" if start_id > 0 else GROUP_START_ALL
        created = True
        for key, start in ((self.stream_key(topic), start_id), (self.redeliver_key(group), GROUP_START_ALL)):
            try:
                await self.client.xgroup_create(key, group, id=start, mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise StoreError(f"ensure_group failed: {exc}") from exc
                if key != self.redeliver_key(group):
                    created = False
            except RedisError as exc:
                raise StoreError(f"ensure_group failed: {exc}") from exc
        return created

    async def remove_group(self, topic: str, group: str) -> bool:
        self._claim_cursors.pop((topic, group), None)
        try:
            await self.client.delete(self.redeliver_key(group))
            return bool(await self.client.xgroup_destroy(self.stream_key(topic), group))
        except ResponseError as exc:
            if "requires the key to exist" in str(exc) or "no such key" in str(exc).lower():
                return False
            raise StoreError(f"remove_group failed: {exc}") from exc
        except RedisError as exc:
            raise StoreError(f"remove_group failed: {exc}") from exc

    async def read_group(
        self, topic: str, group: str, consumer: str, count: int, block_ms: int | None = None,
        *, pending: bool = False,
    ) -> list[StoredEntry]:
        key = self.stream_key(topic)
        if pending:
            block_ms = None
        if self._resp is not None:
            return await self._read_group_packed(key, topic, group, consumer, count, block_ms, pending)
        try:
            response = await self.client.xreadgroup(
                group, consumer, {key: "0" if pending else ">"}, count=count, block=block_ms,
            )
        except RedisError as exc:
            raise StoreError(f"read_group failed: {exc}") from exc
        out: list[StoredEntry] = []
        for _stream, items in response or ():
            for entry_id, fields in items:
                if not fields:  # a pending entry trimmed away; claim_stale reports those
                    continue
                out.append(StoredEntry(_s(entry_id), topic, fields[EVENT_FIELD], id_key(_s(entry_id))[0]))
        return out

    # Delivery reads the stream once per event or so at moderate rates; through redis-py that is
    # most of a read's CPU (argument encoding, the pool, a timeout scope per reply), so the read
    # goes the append's way: one pre-packed command on a raw connection, parsed by hiredis.
    async def _read_group_packed(self, key: str, topic: str, group: str, consumer: str, count: int,
                                 block_ms: int | None, pending: bool) -> list[StoredEntry]:
        args = [b"XREADGROUP", b"GROUP", group.encode(), consumer.encode(), b"COUNT", b"%d" % count]
        if block_ms is not None:
            args += [b"BLOCK", b"%d" % block_ms]
        args += [b"STREAMS", key.encode(), b"0" if pending else b">"]
        resp = self._resp
        assert resp is not None
        try:
            # the server answers a blocked read after block_ms: its reply is due that much later
            [response] = await resp.request(command(*args), 1, None if block_ms is None
                                            else block_ms / 1000 + resp.reply_timeout)
        except (RedisError, OSError) as exc:
            raise StoreError(f"read_group failed: {exc}") from exc
        if isinstance(response, Exception):
            raise StoreError(f"read_group failed: {response}")
        out: list[StoredEntry] = []
        for _stream, items in response or ():
            for entry_id, fields in items:
                if not fields:  # a pending entry trimmed away; claim_stale reports those
                    continue
                event = fields[1] if fields[0] == EVENT_FIELD else dict(zip(fields[::2], fields[1::2],
                                                                            strict=True))[EVENT_FIELD]
                out.append(StoredEntry(entry_id.decode(), topic, event, id_key(entry_id.decode())[0]))
        return out

    async def ack(self, topic: str, group: str, ids: Sequence[str]) -> int:
        if not ids:
            return 0
        if self._resp is not None:
            packed = command(b"XACK", self.stream_key(topic).encode(), group.encode(), *(i.encode() for i in ids))
            try:
                [result] = await self._resp.request(packed, 1)
            except (RedisError, OSError) as exc:
                raise StoreError(f"ack failed: {exc}") from exc
            if isinstance(result, Exception):
                raise StoreError(f"ack failed: {result}")
            return int(result)
        try:
            return int(await self.client.xack(self.stream_key(topic), group, *ids))
        except RedisError as exc:
            raise StoreError(f"ack failed: {exc}") from exc

    async def claim_stale(
        self, topic: str, group: str, consumer: str, min_idle_ms: int, count: int
    ) -> ClaimResult:
        """XAUTOCLAIM with a cursor kept per group, so successive calls sweep the whole PEL."""
        cursor_key = (topic, group)
        start = self._claim_cursors.get(cursor_key, "0-0")
        try:
            response = await self.client.xautoclaim(
                self.stream_key(topic), group, consumer, min_idle_ms, start_id=start, count=count
            )
        except RedisError as exc:
            raise StoreError(f"claim_stale failed: {exc}") from exc
        self._claim_cursors[cursor_key] = _s(response[0])
        result = ClaimResult()
        lost_ids = False
        for entry_id, fields in response[1]:
            if entry_id is None:  # Redis 6.2 claims a trimmed entry but answers nil for it
                lost_ids = True
            elif fields:
                result.entries.append(StoredEntry(_s(entry_id), topic, fields[EVENT_FIELD]))
            else:
                result.missing_ids.append(_s(entry_id))
        if len(response) > 2:  # Redis 7 removes trimmed entries from the PEL and lists them
            result.missing_ids.extend(_s(i) for i in response[2] or ())
        if lost_ids:
            result.missing_ids.extend(await self._trimmed_pending(topic, group, consumer))
        return result

    async def _trimmed_pending(self, topic: str, group: str, consumer: str) -> list[str]:
        """Ids of the consumer's pending entries whose event is gone (its own PEL read back)."""
        key = self.stream_key(topic)
        try:
            response = await self.client.xreadgroup(group, consumer, {key: "0"})
        except RedisError as exc:
            raise StoreError(f"claim_stale failed: {exc}") from exc
        return [_s(i) for _stream, items in response or () for i, fields in items if not fields]

    async def pending(
        self, topic: str, group: str, count: int, *, consumer: str | None = None, min_idle_ms: int = 0
    ) -> list[PendingEntry]:
        try:
            rows = await self.client.xpending_range(
                self.stream_key(topic), group, min="-", max="+", count=count,
                consumername=consumer, idle=min_idle_ms or None,
            )
        except RedisError as exc:
            raise StoreError(f"pending failed: {exc}") from exc
        return [
            PendingEntry(_s(r["message_id"]), _s(r["consumer"]), int(r["time_since_delivered"]),
                         int(r["times_delivered"]))
            for r in rows
        ]

    async def dead_letter(
        self, subscription_id: str, entry: StoredEntry, reason: str, status: int | None, attempts: int,
        *, ack: bool = True, stream_key: str | None = None,
    ) -> str:
        """``stream_key``: the stream the entry was read from, when not the topic's (a redelivery)."""
        fields = {
            b"topic": entry.topic,
            b"event": entry.event,
            b"reason": reason,
            b"status": "" if status is None else str(status),
            b"attempts": str(attempts),
            b"source_id": entry.id,
            b"at": str(int(time.time() * 1000)),
        }
        pipe = self.client.pipeline(transaction=True)
        pipe.xadd(self.dlq_key(subscription_id), fields, maxlen=self.dlq_max_length, approximate=True)
        if ack:
            pipe.xack(stream_key or self.stream_key(entry.topic), subscription_id, entry.id)
        try:
            results = await pipe.execute()
        except RedisError as exc:
            raise StoreError(f"dead_letter failed: {exc}") from exc
        return _s(results[0])

    # retention and inspection -------------------------------------------------------------
    async def trim(self, topic: str, retention: Retention) -> int:
        key = self.stream_key(topic)
        removed = 0
        try:
            if retention.max_length is not None:
                removed += int(await self.client.xtrim(key, maxlen=retention.max_length, approximate=True))
            if retention.max_age_seconds is not None:
                minid = int(time.time() * 1000) - retention.max_age_seconds * 1000
                removed += int(await self.client.xtrim(key, minid=minid, approximate=True))
        except RedisError as exc:
            raise StoreError(f"trim failed: {exc}") from exc
        return removed

    async def groups(self, topic: str) -> list[GroupInfo]:
        try:
            reply = await self._groups_script(keys=[self.stream_key(topic)], args=[LAG_SCAN_CAP])
        except ResponseError as exc:
            if "no such key" in str(exc).lower():
                return []
            raise StoreError(f"group_info failed: {exc}") from exc
        except RedisError as exc:
            raise StoreError(f"group_info failed: {exc}") from exc
        return [GroupInfo(*group) for group in parse_groups(reply)]

    async def group_info(self, topic: str, group: str) -> GroupInfo | None:
        for info in await self.groups(topic):
            if info.name == group:
                return info
        return None

    async def read_range(
        self, topic: str, *, count: int = 100, newest_first: bool = False, after: str | None = None,
        before: str | None = None, from_ms: int | None = None, to_ms: int | None = None,
    ) -> list[StoredEntry]:
        low = _tighter(after, None if from_ms is None else f"{from_ms}-0", low=True)
        high = _tighter(before, None if to_ms is None else f"{to_ms}-0", low=False)
        try:
            if newest_first:
                rows = await self.client.xrevrange(self.stream_key(topic), max=high, min=low, count=count)
            else:
                rows = await self.client.xrange(self.stream_key(topic), min=low, max=high, count=count)
        except RedisError as exc:
            raise StoreError(f"read_range failed: {exc}") from exc
        return [StoredEntry(_s(i), topic, f[EVENT_FIELD], id_key(_s(i))[0]) for i, f in rows]

    async def dead_letters(self, group: str, *, count: int = 50, before: str | None = None) -> list[DeadLetter]:
        try:
            rows = await self.client.xrevrange(self.dlq_key(group), max=f"({before}" if before else "+",
                                               min="-", count=count)
        except RedisError as exc:
            raise StoreError(f"dead_letters failed: {exc}") from exc
        return [_dead_letter(entry_id, fields) for entry_id, fields in rows]

    async def redeliver(self, group: str, ids: Sequence[str] | None, *, by: str) -> int:
        keys = [self.dlq_key(group), self.redeliver_key(group)]
        moved = 0
        try:
            if ids is not None:
                for start in range(0, len(ids), _PAGE):
                    moved += int(await self.client.eval(REDELIVER_SCRIPT, 2, *keys, by, *ids[start:start + _PAGE]))
                return moved
            after = "-"
            while True:
                rows = await self.client.xrange(keys[0], min=after, max="+", count=_PAGE)
                if not rows:
                    return moved
                page = [_s(entry_id) for entry_id, _fields in rows]
                moved += int(await self.client.eval(REDELIVER_SCRIPT, 2, *keys, by, *page))
                after = f"({page[-1]}"
        except RedisError as exc:
            raise StoreError(f"redeliver failed: {exc}") from exc

    async def read_dead_letters(self, subscription_id: str, count: int | None = None) -> list[dict]:
        """The dead-letter stream of a subscription, newest last (inspection and tests)."""
        try:
            rows = await self.client.xrange(self.dlq_key(subscription_id), count=count)
        except RedisError as exc:
            raise StoreError(f"read_dead_letters failed: {exc}") from exc
        return [{"id": _s(i), **{_s(k): v for k, v in f.items()}} for i, f in rows]

    async def length(self, topic: str) -> int:
        try:
            return int(await self.client.xlen(self.stream_key(topic)))
        except RedisError as exc:
            raise StoreError(f"length failed: {exc}") from exc

    async def ping(self) -> bool:
        try:
            return bool(await self.client.ping())
        except (RedisError, OSError):
            return False

    async def close(self) -> None:
        if self._resp is not None:
            await self._resp.close()
        if self._owns_client:
            await self.client.aclose()


def _tighter(position: str | None, at_time: str | None, *, low: bool) -> str:
    """The narrower of an exclusive position bound and an inclusive time bound, as XRANGE takes it."""
    if position is None and at_time is None:
        return "-" if low else "+"
    if at_time is None:
        return f"({position}"
    if position is None:
        return at_time if low else f"({at_time}"  # the time's upper bound is exclusive too
    if low:
        return f"({position}" if id_key(position) >= id_key(at_time) else at_time
    return f"({position}" if id_key(position) <= id_key(at_time) else f"({at_time}"


def _dead_letter(entry_id: bytes | str, fields: dict) -> DeadLetter:
    status = _s(fields.get(b"status", b""))
    return DeadLetter(
        id=_s(entry_id), topic=_s(fields.get(b"topic", b"")), event=fields.get(b"event", b""),
        reason=_s(fields.get(b"reason", b"")), status=int(status) if status.isdigit() else None,
        attempts=int(_s(fields.get(b"attempts", b"0")) or 0), source_id=_s(fields.get(b"source_id", b"")),
        at_ms=int(_s(fields.get(b"at", b"0")) or 0),
    )
