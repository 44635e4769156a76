"""The NATS JetStream engine (``nats://``): a stream per topic, a durable pull consumer per subscription.

Why a stream per topic rather than one stream with a subject per topic: a topic's retention
(``max_length``, ``max_age_seconds``) is a stream's limits (``max_msgs``, ``max_age``) in
JetStream, which a shared stream could only apply to every topic at once; a consumer's lag
(``num_pending``) and a topic's length are then the server's own figures; and a revoked or
removed topic is one stream to delete. Dead letters, and dead letters put back, are small and
shared: one stream each, with a subject per subscription (see :mod:`.names`).

Delivery maps onto JetStream directly: explicit acks, ``AckWait`` is the visibility timeout,
``in_progress`` (``+WPI``) renews it, and the server itself hands a dead runtime's unacked
messages to the next fetch, with their delivery count. ``MaxDeliver`` is left unlimited: after
it the server would stop delivering a message without moving it anywhere, which is the silent
drop the mesh refuses; the delivery engine dead-letters after the subscription's maximum
attempts instead (attempts made = delivery count - 1).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StorageType, StreamConfig
from nats.js.client import JetStreamContext

from meshruntime.keys import DEFAULT_PREFIX

from . import names
from .base import (
    GROUP_START_ALL,
    GROUP_START_NEW,
    AppendEntry,
    DeadLetter,
    GroupInfo,
    Held,
    Journal,
    JourneyStep,
    Retention,
    StoredEntry,
    StoreError,
    redact,
)
from .engine import JournalledStore, split_url

log = logging.getLogger(__name__)

DLQ_MAX_PER_SUBSCRIPTION = 100_000
# a read that does not wait still asks the server once; this is how long that answer may take
NO_WAIT_S = 0.05
_NATS_ERRORS = (nats.errors.Error, nats.js.errors.Error, OSError, asyncio.TimeoutError)


def _ms(value: datetime | None) -> int | None:
    return None if value is None else int(value.timestamp() * 1000)


class _Drain:
    """The messages of an ephemeral pull consumer (``AckPolicy.NONE``), fetched until it has
    delivered all it had.

    A fetch that comes back empty is not the end: on a loaded machine the server's answer can
    arrive after the fetch stopped waiting (``NO_WAIT_S``), and nats-py then keeps it for the next
    fetch. The end is when the server says the consumer has nothing pending and every message it
    delivered has arrived; until then an empty fetch is followed by one that waits as long as a
    request may, and a server that sends nothing even then is an error, not a short answer."""

    def __init__(self, sub: JetStreamContext.PullSubscription, request_timeout_s: float, what: str) -> None:
        self._sub = sub
        self._request_timeout_s = request_timeout_s
        self._what = what
        self._received = 0  # the consumer sequence of the last message received

    async def next(self, batch: int) -> list[Msg]:
        """The next messages (about ``batch``: nats-py also hands over what an earlier fetch left
        queued), or none once the consumer has delivered everything."""
        wait = NO_WAIT_S
        while True:
            msgs = await self._fetch(batch, wait)
            if msgs:
                self._received = max(self._received, msgs[-1].metadata.sequence.consumer)
                return msgs
            info = await self._sub.consumer_info()
            if info.num_pending == 0 and info.delivered.consumer_seq <= self._received:
                return []
            if wait >= self._request_timeout_s:
                raise StoreError(f"{self._what} failed: the server has {info.num_pending} more messages for the read "
                                 f"and sent none within {self._request_timeout_s} s")
            wait = self._request_timeout_s

    async def _fetch(self, batch: int, wait_s: float) -> list[Msg]:
        try:
            return await self._sub.fetch(batch, timeout=wait_s)
        except (TimeoutError, nats.errors.TimeoutError):
            return []


class NatsStore(JournalledStore):
    """:class:`~meshruntime.store.base.Store` on NATS JetStream."""

    kind = "nats"
    durable = True

    def __init__(self, url: str, *, prefix: str = DEFAULT_PREFIX, name: str = "default",
                 visibility_timeout_s: float = 30.0, journal: Journal | None = None,
                 connect_timeout_s: float = 2.0, request_timeout_s: float = 5.0) -> None:
        split_url(url, name, ("nats", "tls"), "a nats://host:port URL")
        self.url = url
        super().__init__(prefix=prefix, name=name, where=redact(url), journal=journal,
                         connect_timeout_s=connect_timeout_s)
        self.visibility_timeout_s = visibility_timeout_s
        self.request_timeout_s = request_timeout_s
        self._nc: NatsClient | None = None
        self._connecting = asyncio.Lock()
        self._streams: dict[str, Retention | None] = {}  # topic -> the limits its stream has

    # -- connection ------------------------------------------------------------------------------
    async def connect(self) -> None:
        await self._client()

    async def _client(self) -> NatsClient:
        if self._nc is not None and not self._nc.is_closed:
            return self._nc
        async with self._connecting:
            if self._nc is None or self._nc.is_closed:
                try:
                    # reconnects forever once connected (the server restarts, the runtime waits);
                    # the first connection fails fast so that a wrong URL is reported at start
                    nc = await nats.connect(
                        servers=[self.url], name=f"meshruntime {self.name}", connect_timeout=self.connect_timeout_s,
                        allow_reconnect=True, max_reconnect_attempts=1, reconnect_time_wait=0.25,
                        error_cb=self._on_error, disconnected_cb=self._on_disconnect,
                    )
                except (*_NATS_ERRORS, nats.errors.NoServersError) as error:
                    raise StoreError(f"{self.label} cannot be reached: {error!r}") from error
                nc.options["max_reconnect_attempts"] = -1  # from now on, for as long as it takes
                self._nc = nc
            return self._nc

    async def _on_error(self, error: Exception) -> None:
        log.debug("%s: %r", self.label, error)

    async def _on_disconnect(self) -> None:
        log.info("%s: disconnected; reconnecting", self.label)

    async def _js(self):
        return (await self._client()).jetstream(timeout=self.request_timeout_s)

    # -- streams ---------------------------------------------------------------------------------
    def _stream_config(self, topic: str, retention: Retention | None) -> StreamConfig:
        retention = retention or Retention()
        return StreamConfig(
            name=names.nats_topic_stream(self.prefix, topic), subjects=[names.nats_topic_subject(self.prefix, topic)],
            max_msgs=retention.max_length if retention.max_length is not None else -1,
            max_age=float(retention.max_age_seconds) if retention.max_age_seconds is not None else 0,
            storage=StorageType.FILE,
        )

    async def _ensure_stream(self, topic: str, retention: Retention | None) -> str:
        """Create the topic's stream, or set its limits when they changed; None keeps them."""
        stream = names.nats_topic_stream(self.prefix, topic)
        if topic in self._streams and (retention is None or self._streams[topic] == retention):
            return stream
        js = await self._js()
        config = self._stream_config(topic, retention)
        try:
            try:
                info = await js.stream_info(stream)
            except nats.js.errors.NotFoundError:
                with contextlib.suppress(nats.js.errors.BadRequestError):  # created meanwhile elsewhere
                    await js.add_stream(config)
                    self._streams[topic] = retention
                    return stream
                info = await js.stream_info(stream)
            if retention is not None and (info.config.max_msgs, info.config.max_age or 0) != (
                    config.max_msgs, config.max_age or 0):
                await js.update_stream(config)
            self._streams[topic] = retention if retention is not None else Retention(
                None if (info.config.max_msgs or -1) < 0 else info.config.max_msgs,
                int(info.config.max_age) if info.config.max_age else None)
        except _NATS_ERRORS as error:
            raise StoreError(f"{self.label}: stream {stream} failed: {error!r}") from error
        return stream

    async def _ensure_shared(self, stream: str, subject: str, max_per_subject: int = -1) -> None:
        js = await self._js()
        try:
            await js.stream_info(stream)
        except nats.js.errors.NotFoundError:
            with contextlib.suppress(nats.js.errors.BadRequestError):
                await js.add_stream(StreamConfig(name=stream, subjects=[subject], storage=StorageType.FILE,
                                                 max_msgs_per_subject=max_per_subject))
        except _NATS_ERRORS as error:
            raise StoreError(f"{self.label}: stream {stream} failed: {error!r}") from error

    # -- publish ---------------------------------------------------------------------------------
    async def append_many(self, entries: Sequence[AppendEntry], *, journey: Sequence[JourneyStep] = ()) -> list[str]:
        subjects = {}  # each topic's subject once per call (names are checked as they are built)
        for topic, retention in {(e.topic, e.retention): None for e in entries}:
            await self._ensure_stream(topic, retention)
            subjects[topic] = names.nats_topic_subject(self.prefix, topic)
        js = await self._js()
        try:
            if len(entries) == 1:
                acks = [await js.publish(subjects[entries[0].topic], entries[0].event)]
            else:
                # published back to back on one connection (stored in this order), acks awaited together
                futures = [await js.publish_async(subjects[e.topic], e.event) for e in entries]
                async with asyncio.timeout(self.request_timeout_s):
                    acks = await asyncio.gather(*futures)
        except _NATS_ERRORS as error:
            raise StoreError(f"{self.label}: append failed: {error!r}") from error
        if journey:
            await self.record_journey(journey)
        return [str(ack.seq) for ack in acks]

    # -- groups ----------------------------------------------------------------------------------
    async def ensure_group(self, topic: str, group: str, start: str | int = GROUP_START_NEW) -> bool:
        stream = await self._ensure_stream(topic, None)
        await self._ensure_shared(names.nats_redeliver_stream(self.prefix), names.nats_redeliver_subject(self.prefix))
        await self._ensure_shared(names.nats_dlq_stream(self.prefix), names.nats_dlq_subject(self.prefix),
                                  DLQ_MAX_PER_SUBSCRIPTION)
        durable = names.nats_consumer(group)
        if start == GROUP_START_ALL:
            policy = {"deliver_policy": DeliverPolicy.ALL}
        elif start == GROUP_START_NEW:
            policy = {"deliver_policy": DeliverPolicy.NEW}
        else:
            at = datetime.fromtimestamp(int(start) / 1000, UTC).isoformat().replace("+00:00", "Z")
            policy = {"deliver_policy": DeliverPolicy.BY_START_TIME, "opt_start_time": at}
        js = await self._js()
        created = False
        try:
            try:
                await js.consumer_info(stream, durable)
            except nats.js.errors.NotFoundError:
                await js.add_consumer(stream, self._consumer_config(durable, **policy))
                created = True
            redeliver = names.nats_redeliver_stream(self.prefix)
            try:
                await js.consumer_info(redeliver, durable)
            except nats.js.errors.NotFoundError:
                await js.add_consumer(redeliver, self._consumer_config(
                    durable, deliver_policy=DeliverPolicy.ALL,
                    filter_subject=names.nats_redeliver_subject(self.prefix, group)))
        except _NATS_ERRORS as error:
            raise StoreError(f"{self.label}: ensure_group failed: {error!r}") from error
        return created

    def _consumer_config(self, durable: str, **more) -> ConsumerConfig:
        return ConsumerConfig(durable_name=durable, ack_policy=AckPolicy.EXPLICIT, ack_wait=self.visibility_timeout_s,
                              max_deliver=-1, max_ack_pending=-1, **more)

    async def remove_group(self, topic: str, group: str) -> bool:
        js = await self._js()
        durable = names.nats_consumer(group)
        removed = False
        try:
            with contextlib.suppress(nats.js.errors.NotFoundError):
                removed = await js.delete_consumer(names.nats_topic_stream(self.prefix, topic), durable)
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await js.delete_consumer(names.nats_redeliver_stream(self.prefix), durable)
                await js.purge_stream(names.nats_redeliver_stream(self.prefix),
                                      subject=names.nats_redeliver_subject(self.prefix, group))
        except _NATS_ERRORS as error:
            raise StoreError(f"{self.label}: remove_group failed: {error!r}") from error
        return bool(removed)

    def consumer(self, topic: str, group: str, name: str) -> NatsGroupConsumer:
        return NatsGroupConsumer(self, topic, group, name)

    async def group_info(self, topic: str, group: str) -> GroupInfo | None:
        js = await self._js()
        try:
            info = await js.consumer_info(names.nats_topic_stream(self.prefix, topic), names.nats_consumer(group))
        except nats.js.errors.NotFoundError:
            return None
        except _NATS_ERRORS as error:
            raise StoreError(f"{self.label}: group_info failed: {error!r}") from error
        last = info.delivered.stream_seq if info.delivered else 0
        return GroupInfo(group, None, info.num_ack_pending, str(last), info.num_pending)

    # -- reading by position ---------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def _ephemeral(self, stream: str, subject: str, config: ConsumerConfig,
                         what: str) -> AsyncIterator[_Drain | None]:
        """One read through an ephemeral pull consumer: yields its :class:`_Drain`, or None when
        the stream does not exist; deletes the consumer after. The engine's errors are StoreErrors
        naming ``what``."""
        js = await self._js()
        try:
            sub = await js.pull_subscribe(subject, stream=stream, config=config)
        except nats.js.errors.NotFoundError:
            sub = None
        except _NATS_ERRORS as error:
            raise StoreError(f"{self.label}: {what} failed: {error!r}") from error
        if sub is None:
            yield None
            return
        try:
            yield _Drain(sub, self.request_timeout_s, f"{self.label}: {what}")
        except _NATS_ERRORS as error:
            raise StoreError(f"{self.label}: {what} failed: {error!r}") from error
        finally:
            with contextlib.suppress(*_NATS_ERRORS):
                info = await sub.consumer_info()
                await sub.unsubscribe()
                await js.delete_consumer(stream, info.name)

    async def _scan(self, topic: str, start: dict, count: int, stop_seq: int | None = None) -> list[StoredEntry]:
        """Up to ``count`` events from a start (sequence or time) and before ``stop_seq``, through an
        ephemeral consumer. It ends at ``count``, at ``stop_seq`` (the event before it read, or one
        after it seen), or once the consumer has delivered everything (:class:`_Drain`): never
        because a fetch came back short, which on a loaded machine a page would silently be."""
        config = ConsumerConfig(ack_policy=AckPolicy.NONE, inactive_threshold=30.0, mem_storage=True,
                                max_deliver=1, **start)
        out: list[StoredEntry] = []
        async with self._ephemeral(names.nats_topic_stream(self.prefix, topic),
                                   names.nats_topic_subject(self.prefix, topic), config, "read_range") as drain:
            while drain is not None and len(out) < count:
                msgs = await drain.next(max(2, min(256, count - len(out))))  # not 1: nats-py pulls one without no_wait
                if not msgs:
                    break
                for msg in msgs:
                    seq = msg.metadata.sequence.stream
                    if stop_seq is not None and seq >= stop_seq:
                        return out
                    out.append(StoredEntry(str(seq), topic, msg.data, _ms(msg.metadata.timestamp)))
                    if len(out) >= count or (stop_seq is not None and seq == stop_seq - 1):
                        return out
        return out

    async def _seq_at(self, topic: str, at_ms: int) -> int | None:
        """The sequence of the first event appended at or after ``at_ms``; None when none is."""
        at = datetime.fromtimestamp(at_ms / 1000, UTC).isoformat().replace("+00:00", "Z")
        found = await self._scan(topic, {"deliver_policy": DeliverPolicy.BY_START_TIME, "opt_start_time": at}, 1)
        return int(found[0].id) if found else None

    async def _bounds(self, topic: str) -> tuple[int, int] | None:
        js = await self._js()
        try:
            info = await js.stream_info(names.nats_topic_stream(self.prefix, topic))
        except nats.js.errors.NotFoundError:
            return None
        except _NATS_ERRORS as error:
            raise StoreError(f"{self.label}: stream info failed: {error!r}") from error
        return info.state.first_seq, info.state.last_seq

    async def read_range(
        self, topic: str, *, count: int = 100, newest_first: bool = False, after: str | None = None,
        before: str | None = None, from_ms: int | None = None, to_ms: int | None = None,
    ) -> list[StoredEntry]:
        bounds = await self._bounds(topic)
        if bounds is None or count <= 0:
            return []
        low, high = bounds[0], bounds[1] + 1  # [low, high)
        if after is not None:
            low = max(low, int(after) + 1)
        if before is not None:
            high = min(high, int(before))
        if from_ms is not None:
            at = await self._seq_at(topic, from_ms)
            low = max(low, at if at is not None else high)
        if to_ms is not None:
            at = await self._seq_at(topic, to_ms)
            if at is not None:
                high = min(high, at)
        if low >= high:
            return []
        if not newest_first:
            return await self._scan(topic, {"deliver_policy": DeliverPolicy.BY_START_SEQUENCE, "opt_start_seq": low},
                                    count, high)
        # no reverse reads in JetStream: windows of sequences from the end, wider while deleted
        # messages leave them short
        out: list[StoredEntry] = []
        width = count
        while high > low and len(out) < count:
            start = max(low, high - width)
            window = await self._scan(topic, {"deliver_policy": DeliverPolicy.BY_START_SEQUENCE,
                                              "opt_start_seq": start}, high - start, high)
            out.extend(reversed(window))
            high, width = start, width * 2
        return out[:count]

    async def length(self, topic: str) -> int:
        js = await self._js()
        try:
            return (await js.stream_info(names.nats_topic_stream(self.prefix, topic))).state.messages
        except nats.js.errors.NotFoundError:
            return 0
        except _NATS_ERRORS as error:
            raise StoreError(f"{self.label}: length failed: {error!r}") from error

    async def trim(self, topic: str, retention: Retention) -> int:
        """Sets the stream's limits to the topic's retention: the server removes what is over them."""
        before = await self.length(topic)
        if before == 0 and topic not in self._streams:
            return 0
        self._streams.pop(topic, None)
        await self._ensure_stream(topic, retention)
        return max(0, before - await self.length(topic))

    # -- dead letters ----------------------------------------------------------------------------
    async def _dead_letter(self, group: str, entry: StoredEntry, reason: str, status: int | None,
                           attempts: int) -> str:
        await self._ensure_shared(names.nats_dlq_stream(self.prefix), names.nats_dlq_subject(self.prefix),
                                  DLQ_MAX_PER_SUBSCRIPTION)
        headers = {"Mesh-Topic": entry.topic, "Mesh-Reason": reason,
                   "Mesh-Status": "" if status is None else str(status), "Mesh-Attempts": str(attempts),
                   "Mesh-Source-Id": entry.id, "Mesh-At": str(int(time.time() * 1000))}
        js = await self._js()
        try:
            ack = await js.publish(names.nats_dlq_subject(self.prefix, group), entry.event, headers=headers)
        except _NATS_ERRORS as error:
            raise StoreError(f"{self.label}: dead_letter failed: {error!r}") from error
        return str(ack.seq)

    async def _all_dead_letters(self, group: str) -> list[DeadLetter]:
        config = ConsumerConfig(ack_policy=AckPolicy.NONE, inactive_threshold=30.0, mem_storage=True,
                                deliver_policy=DeliverPolicy.ALL,
                                filter_subject=names.nats_dlq_subject(self.prefix, group))
        out: list[DeadLetter] = []
        async with self._ephemeral(names.nats_dlq_stream(self.prefix), config.filter_subject, config,
                                   "dead_letters") as drain:
            while drain is not None and (msgs := await drain.next(256)):
                for msg in msgs:
                    h = msg.headers or {}
                    status = h.get("Mesh-Status", "")
                    out.append(DeadLetter(
                        id=str(msg.metadata.sequence.stream), topic=h.get("Mesh-Topic", ""), event=msg.data,
                        reason=h.get("Mesh-Reason", ""), status=int(status) if status.isdigit() else None,
                        attempts=int(h.get("Mesh-Attempts") or 0), source_id=h.get("Mesh-Source-Id", ""),
                        at_ms=int(h.get("Mesh-At") or 0)))
        return out

    async def dead_letters(self, group: str, *, count: int = 50, before: str | None = None) -> list[DeadLetter]:
        """Reads the subscription's subject of the shared dead-letter stream through (the stream
        is bounded per subscription; JetStream has no reverse read)."""
        letters = [d for d in await self._all_dead_letters(group) if before is None or int(d.id) < int(before)]
        return list(reversed(letters))[:count]

    async def redeliver(self, group: str, ids: Sequence[str] | None, *, by: str) -> int:
        """Each dead letter is published for the subscription, then deleted from the dead letters.

        The publish carries a message id made of the subscription and the dead letter's sequence,
        so that two operators putting the same one back at once store it once (JetStream's
        duplicate window); a crash between the two steps leaves it in both, never in neither."""
        letters = {d.id: d for d in await self._all_dead_letters(group)}
        chosen = list(letters) if ids is None else [i for i in ids if i in letters]
        if not chosen:
            return 0
        await self._ensure_shared(names.nats_redeliver_stream(self.prefix), names.nats_redeliver_subject(self.prefix))
        js = await self._js()
        moved = 0
        try:
            for dlq_id in chosen:
                await js.publish(names.nats_redeliver_subject(self.prefix, group), letters[dlq_id].event,
                                 headers={"Nats-Msg-Id": f"{group}:{dlq_id}", "Mesh-Dlq-Id": dlq_id, "Mesh-By": by})
                try:
                    await js.delete_msg(names.nats_dlq_stream(self.prefix), int(dlq_id))
                    moved += 1
                except nats.js.errors.NotFoundError:
                    pass  # put back by someone else meanwhile (and stored once, see above)
        except _NATS_ERRORS as error:
            raise StoreError(f"{self.label}: redeliver failed: {error!r}") from error
        return moved

    # -- life ------------------------------------------------------------------------------------
    async def ping(self) -> bool:
        try:
            nc = await self._client()
            await nc.flush(timeout=2)
            return nc.is_connected
        except (StoreError, *_NATS_ERRORS):
            return False

    async def close(self) -> None:
        if self._nc is not None and not self._nc.is_closed:
            with contextlib.suppress(*_NATS_ERRORS):
                await self._nc.drain()
        self._nc = None


class NatsGroupConsumer:
    """A member of a subscription's group: pull subscriptions bound to its two durable consumers.

    Members of one group share the durable consumers, and the server spreads messages among
    their fetches; nothing here is per member but what it holds.
    """

    orders_itself = False  # the server spreads a stream over every fetching member
    redeliver_poll_s = 1.0  # dead letters put back are looked for at most this often while busy

    def __init__(self, store: NatsStore, topic: str, group: str, name: str) -> None:
        self.store = store
        self.topic = topic
        self.group = group
        self.name = name
        self._subs: dict[str, object] = {}
        self._next_redeliver_read = 0.0
        # held beyond what a read asked for, handed over by the next reads (see _fetch)
        self._surplus: dict[str, list[Held]] = {}

    async def _sub(self, source: str):
        sub = self._subs.get(source)
        if sub is None:
            js = await self.store._js()
            stream = (names.nats_topic_stream(self.store.prefix, self.topic) if source == "topic"
                      else names.nats_redeliver_stream(self.store.prefix))
            try:
                sub = await js.pull_subscribe_bind(names.nats_consumer(self.group), stream=stream)
            except _NATS_ERRORS as error:
                raise StoreError(f"{self.store.label}: binding to {stream} failed: {error!r}") from error
            self._subs[source] = sub
        return sub

    async def _fetch(self, source: str, count: int, wait_s: float) -> list[Held]:
        """At most ``count`` held events from one of the two durable consumers.

        nats-py's ``fetch`` first drains whatever its subscription's queue holds — messages the
        server sent for an earlier fetch that timed out before they arrived — however many that
        is, so a fetch can return more than its batch. A read never hands over more than it was
        asked for (the delivery engine's in-flight limit rests on it): the rest are kept, still
        held by this member, and are what the next read returns.
        """
        if surplus := self._surplus.get(source):
            held, self._surplus[source] = surplus[:count], surplus[count:]
            return held
        sub = await self._sub(source)
        try:
            msgs = await sub.fetch(count, timeout=max(wait_s, NO_WAIT_S))
        except (TimeoutError, nats.errors.TimeoutError):
            return []
        except nats.js.errors.NotFoundError as error:
            raise StoreError(f"{self.store.label}: NOGROUP {self.group} on {self.topic}: {error!r}") from error
        except _NATS_ERRORS as error:
            raise StoreError(f"{self.store.label}: read failed: {error!r}") from error
        held = []
        for msg in msgs:
            meta = msg.metadata
            held.append(Held(StoredEntry(str(meta.sequence.stream), self.topic, msg.data, _ms(meta.timestamp)),
                             max(0, meta.num_delivered - 1), source, token=msg))
        if len(held) > count:
            held, self._surplus[source] = held[:count], held[count:]
        return held

    async def read(self, count: int, block_ms: int | None = None) -> list[Held]:
        now = time.monotonic()
        if now >= self._next_redeliver_read:
            self._next_redeliver_read = now + self.redeliver_poll_s
            held = await self._fetch("redeliver", count, NO_WAIT_S)
            if held:
                self._next_redeliver_read = 0.0
                return held
        return await self._fetch("topic", count, (block_ms or 0) / 1000)

    async def claim_stale(self, count: int) -> list[Held]:
        return []  # the server redelivers after AckWait, through read

    async def take_over(self, count: int) -> list[Held]:
        return []

    async def renew(self, held: Sequence[Held], *, attempts: int | None = None) -> None:
        """``+WPI`` on each: AckWait starts again. JetStream keeps the delivery count itself and
        cannot be told an attempt count (``attempts`` is not recorded: see docs/stores.md)."""
        try:
            for h in held:
                await h.token.in_progress()
        except _NATS_ERRORS as error:
            raise StoreError(f"{self.store.label}: renew failed: {error!r}") from error

    async def release(self, held: Sequence[Held]) -> None:
        try:
            for h in held:
                await h.token.nak()
        except _NATS_ERRORS as error:
            raise StoreError(f"{self.store.label}: release failed: {error!r}") from error

    async def ack(self, held: Sequence[Held]) -> None:
        if not held:
            return
        try:
            for h in held:
                msg: Msg = h.token
                await msg.ack()
            # acks are fire-and-forget publishes; the flush's round trip means the server has them
            await (await self.store._client()).flush(timeout=self.store.request_timeout_s)
        except _NATS_ERRORS as error:
            raise StoreError(f"{self.store.label}: ack failed: {error!r}") from error

    async def dead_letter(self, held: Held, reason: str, status: int | None, attempts: int) -> str:
        dlq_id = await self.store._dead_letter(self.group, held.entry, reason, status, attempts)
        try:
            await held.token.ack_sync(timeout=self.store.request_timeout_s)
        except _NATS_ERRORS as error:
            raise StoreError(f"{self.store.label}: ack after dead letter failed: {error!r}") from error
        return dlq_id

    async def close(self) -> None:
        surplus = [h for held in self._surplus.values() for h in held]
        self._surplus.clear()
        with contextlib.suppress(StoreError):
            await self.release(surplus)  # back to the group at once rather than after AckWait
        for sub in self._subs.values():
            with contextlib.suppress(*_NATS_ERRORS):
                await sub.unsubscribe()
        self._subs.clear()
