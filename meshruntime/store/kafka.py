"""The Kafka engine (``kafka://host:port[,host:port...][?partitions=N&replication_factor=R]``).

A mesh topic is a Kafka topic (``partitions``, default 1: order is per partition, and an ordered
subscription needs one), a subscription is a consumer group, and its dead letters and put-back
dead letters are two topics of its own (see :mod:`.names`).

Kafka has offsets, not per-message acknowledgements. A member of a group acknowledges events in
any order (``max_in_flight`` above 1), so it keeps, per partition, the offsets it has read and
not finished, and commits only up to the lowest of them: a crash, or a partition moving to
another member, re-delivers everything from there, and nothing is skipped. The lease is the
membership itself: a member that stops heartbeating for ``session.timeout.ms`` (the visibility
timeout) loses its partitions, and the member that gets them reads on from the committed offset.
Kafka keeps no count of deliveries per event, so attempts start again at 0 after a takeover
(docs/stores.md).

Dead letters are records with headers (reason, status, attempts, source position) keyed by a
random id; putting one back appends it to the subscription's redelivery topic and writes a
tombstone (same key, no value) to the dead-letter topic, which readers fold away (and a
compacted topic drops for good). Retention: ``retention.ms`` when a topic is created, and
``trim`` deletes records below the limits where the broker implements DeleteRecords.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import time
import uuid
from collections.abc import Sequence
from urllib.parse import parse_qs

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic, RecordsToDelete
from aiokafka.coordinator.assignors.sticky.sticky_assignor import StickyPartitionAssignor
from aiokafka.errors import KafkaConnectionError, KafkaError, TopicAlreadyExistsError
from aiokafka.protocol.admin import DeleteGroupsRequest
from aiokafka.structs import OffsetAndMetadata

from meshruntime.keys import DEFAULT_PREFIX

from . import names
from .base import (
    GROUP_START_ALL,
    GROUP_START_NEW,
    AppendEntry,
    DeadLetter,
    GroupInfo,
    Held,
    HeldLost,
    Journal,
    JourneyStep,
    Retention,
    StoredEntry,
    StoreError,
    StoreUnsupported,
)
from .engine import JournalledStore, split_url

log = logging.getLogger(__name__)

_ERRORS = (KafkaError, OSError, asyncio.TimeoutError)
_FETCH_MS = 100  # one poll of a range read; it polls on until the records it knows of are there


def _position(partition: int, offset: int) -> str:
    return f"{partition}-{offset}"


def _parse_position(position: str) -> tuple[int, int]:
    partition, _, offset = position.partition("-")
    return int(partition), int(offset)


class KafkaStore(JournalledStore):
    """:class:`~meshruntime.store.base.Store` on Kafka (any broker speaking its protocol)."""

    kind = "kafka"
    durable = True

    def __init__(self, url: str, *, prefix: str = DEFAULT_PREFIX, name: str = "default",
                 visibility_timeout_s: float = 30.0, journal: Journal | None = None,
                 connect_timeout_s: float = 5.0) -> None:
        parts = split_url(url, name, ("kafka",), "a kafka://host:port URL", host_list=True)
        options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        unknown = set(options) - {"partitions", "replication_factor"}
        if unknown:
            raise ValueError(f"event store {name!r}: unknown option(s) {', '.join(sorted(unknown))} in its URL "
                             "(known: partitions, replication_factor)")
        try:
            self.partitions = int(options.get("partitions", 1))
            self.replication_factor = int(options.get("replication_factor", 1))
        except ValueError as error:
            raise ValueError(f"event store {name!r}: partitions and replication_factor must be numbers") from error
        if self.partitions < 1 or self.replication_factor < 1:
            raise ValueError(f"event store {name!r}: partitions and replication_factor must be at least 1")
        self.bootstrap = parts.netloc.rpartition("@")[2]
        super().__init__(prefix=prefix, name=name, where=self.bootstrap, journal=journal,
                         connect_timeout_s=connect_timeout_s)
        self.visibility_timeout_s = visibility_timeout_s
        self._producer: AIOKafkaProducer | None = None
        self._admin: AIOKafkaAdminClient | None = None
        self._reader: AIOKafkaConsumer | None = None  # no group: offsets, times, range reads
        self._starting = asyncio.Lock()
        self._topics: set[str] = set()  # Kafka topics known to exist
        self._partition_counts: dict[str, int] = {}
        self._reading = asyncio.Lock()  # the reader is assigned per read

    # -- connection ------------------------------------------------------------------------------
    async def connect(self) -> None:
        await self._start()

    async def _start(self) -> None:
        if self._producer is not None:
            return
        async with self._starting:
            if self._producer is not None:
                return
            producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all", linger_ms=0,
                                        request_timeout_ms=int(self.connect_timeout_s * 2000))
            admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap,
                                        request_timeout_ms=int(self.connect_timeout_s * 1000))
            reader = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
            try:
                async with asyncio.timeout(self.connect_timeout_s * 2):
                    await producer.start()
                    await admin.start()
                    await reader.start()
            except (*_ERRORS, TimeoutError) as error:
                for client in (producer, reader):
                    with contextlib.suppress(*_ERRORS):
                        await client.stop()
                with contextlib.suppress(*_ERRORS):
                    await admin.close()
                raise StoreError(f"{self.label} cannot be reached: {error!r}") from error
            self._producer, self._admin, self._reader = producer, admin, reader

    # -- topics ----------------------------------------------------------------------------------
    async def _ensure_topic(self, kafka_topic: str, retention: Retention | None = None, *,
                            partitions: int | None = None) -> None:
        if kafka_topic in self._topics:
            return
        await self._start()
        configs = {}
        if retention is not None and retention.max_age_seconds is not None:
            configs["retention.ms"] = str(retention.max_age_seconds * 1000)
        topic = NewTopic(kafka_topic, partitions or self.partitions, self.replication_factor, topic_configs=configs)
        try:
            response = await self._admin.create_topics([topic])
        except TopicAlreadyExistsError:
            response = None
        except _ERRORS as error:
            raise StoreError(f"{self.label}: creating topic {kafka_topic} failed: {error!r}") from error
        for _name, code, *message in getattr(response, "topic_errors", ()):
            if code not in (0, TopicAlreadyExistsError.errno):
                raise StoreError(f"{self.label}: creating topic {kafka_topic} failed: error {code} {message}")
        self._topics.add(kafka_topic)

    async def _partitions(self, kafka_topic: str) -> list[TopicPartition]:
        """The topic's partitions; [] when it does not exist. Asked of the topic list first: a
        broker may create a topic it is asked to describe (Tansu does)."""
        found = self._partition_counts.get(kafka_topic)
        if found is None:
            await self._start()
            try:
                if kafka_topic not in await self._admin.list_topics():
                    return []
                [described] = await self._admin.describe_topics([kafka_topic])
            except _ERRORS as error:
                raise StoreError(f"{self.label}: describing topic {kafka_topic} failed: {error!r}") from error
            found = self._partition_counts[kafka_topic] = len(described["partitions"])
            self._topics.add(kafka_topic)
        return [TopicPartition(kafka_topic, p) for p in range(found)]

    async def _ends(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        """Each partition's end: the offset the next record gets.

        Taken from a fetch's high watermark: some brokers (Tansu) answer ListOffsets with the base
        offset of the last batch plus one, which is short of the end when that batch holds more
        than one record."""
        if not tps:
            return {}
        try:
            reported = await self._reader.end_offsets(tps)
            starts = await self._reader.beginning_offsets(tps)
        except _ERRORS as error:
            raise StoreError(f"{self.label}: offsets failed: {error!r}") from error
        ends = {}
        for tp in tps:
            end = reported[tp]
            if end > starts[tp] and await self._fetch(tp, end - 1, end, 1):
                end = max(end, self._reader.highwater(tp) or end)  # the fetch answer's high watermark
            ends[tp] = end
        return ends

    async def _fetch(self, tp: TopicPartition, start: int, stop: int, count: int) -> list:
        """Records of one partition in ``[start, stop)``, at most ``count`` (``stop`` is known to be
        at most the end, so an empty answer means "not yet", until the deadline)."""
        out: list = []
        if start >= stop:
            return out
        async with self._reading:
            reader = self._reader
            try:
                reader.assign([tp])
                reader.seek(tp, start)
                async with asyncio.timeout(self.connect_timeout_s):
                    while len(out) < count:
                        batch = await reader.getmany(tp, timeout_ms=_FETCH_MS, max_records=min(count - len(out), 500))
                        for record in batch.get(tp, ()):
                            if record.offset >= stop:
                                return out
                            out.append(record)
                            if len(out) >= count or record.offset + 1 >= stop:
                                return out
            except TimeoutError:
                if out:
                    return out
                raise StoreError(f"{self.label}: no record of {tp.topic} [{tp.partition}] from offset {start} "
                                 f"came within {self.connect_timeout_s} s") from None
            except _ERRORS as error:
                raise StoreError(f"{self.label}: read failed: {error!r}") from error
        return out

    # -- publish ---------------------------------------------------------------------------------
    async def append_many(self, entries: Sequence[AppendEntry], *, journey: Sequence[JourneyStep] = ()) -> list[str]:
        await self._start()
        # each topic's name once per call: names are checked as they are built, which per event
        # was most of a batch's cost in this process
        kafka_topics = {}
        for topic, retention in {(e.topic, e.retention): None for e in entries}:
            kafka_topic = kafka_topics.get(topic) or names.kafka_topic(self.prefix, topic)
            kafka_topics[topic] = kafka_topic
            await self._ensure_topic(kafka_topic, retention)
        try:
            if len(entries) == 1:
                results = [await self._producer.send_and_wait(kafka_topics[entries[0].topic], entries[0].event)]
            else:
                send = self._producer.send
                futures = [await send(kafka_topics[e.topic], e.event) for e in entries]
                results = await asyncio.gather(*futures)
        except _ERRORS as error:
            raise StoreError(f"{self.label}: append failed: {error!r}") from error
        if journey:
            await self.record_journey(journey)
        return [_position(r.partition, r.offset) for r in results]

    # -- groups ----------------------------------------------------------------------------------
    async def _committed(self, kafka_group: str, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        """The group's committed offsets (partitions it has none for are left out)."""
        if not tps:
            return {}
        try:
            found = await self._admin.list_consumer_group_offsets(kafka_group, partitions=tps)
        except _ERRORS as error:
            raise StoreError(f"{self.label}: committed offsets failed: {error!r}") from error
        return {tp: meta.offset for tp, meta in found.items() if meta.offset >= 0}

    async def _commit_as_admin(self, kafka_group: str, offsets: dict[TopicPartition, int]) -> None:
        """Commit for a group that has no member (its creation): a consumer outside the group."""
        committer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=kafka_group, enable_auto_commit=False)
        try:
            await committer.start()
            committer.assign(list(offsets))
            await committer.commit({tp: OffsetAndMetadata(offset, "") for tp, offset in offsets.items()})
        except _ERRORS as error:
            raise StoreError(f"{self.label}: creating group {kafka_group} failed: {error!r}") from error
        finally:
            with contextlib.suppress(*_ERRORS):
                await committer.stop()

    async def ensure_group(self, topic: str, group: str, start: str | int = GROUP_START_NEW) -> bool:
        """The group exists once it has committed offsets; a new one gets them here, at ``start``,
        so that events appended before its first member joins are not missed."""
        kafka_topic = names.kafka_topic(self.prefix, topic)
        redeliver = names.kafka_redeliver_topic(self.prefix, group)
        await self._ensure_topic(kafka_topic)
        await self._ensure_topic(redeliver, partitions=1)
        await self._ensure_topic(names.kafka_dlq_topic(self.prefix, group), partitions=1)
        tps = await self._partitions(kafka_topic)
        redeliver_group = names.kafka_redeliver_group(self.prefix, group)
        redeliver_tps = await self._partitions(redeliver)
        if not await self._committed(redeliver_group, redeliver_tps):
            await self._commit_as_admin(redeliver_group, dict.fromkeys(redeliver_tps, 0))
        if await self._committed(names.kafka_group(self.prefix, group), tps):
            return False
        try:
            if start == GROUP_START_ALL:
                offsets = await self._reader.beginning_offsets(tps)
            elif start == GROUP_START_NEW:
                offsets = await self._ends(tps)
            else:
                offsets = await self._time_offsets(tps, int(start), await self._ends(tps))
        except _ERRORS as error:
            raise StoreError(f"{self.label}: ensure_group failed: {error!r}") from error
        await self._commit_as_admin(names.kafka_group(self.prefix, group), offsets)
        return True

    async def remove_group(self, topic: str, group: str) -> bool:
        await self._start()
        kafka_group = names.kafka_group(self.prefix, group)
        tps = await self._partitions(names.kafka_topic(self.prefix, topic))
        existed = bool(await self._committed(kafka_group, tps))
        try:
            for doomed in (kafka_group, names.kafka_redeliver_group(self.prefix, group)):
                coordinator = await self._admin.find_coordinator(doomed)
                # aiokafka's admin has no call for DeleteGroups; its generic send carries the request
                await self._admin._send_request(DeleteGroupsRequest([doomed]), coordinator)
            await self._admin.delete_topics([names.kafka_redeliver_topic(self.prefix, group)])
        except _ERRORS as error:
            raise StoreError(f"{self.label}: remove_group failed: {error!r}") from error
        self._topics.discard(names.kafka_redeliver_topic(self.prefix, group))
        self._partition_counts.pop(names.kafka_redeliver_topic(self.prefix, group), None)
        return existed

    def consumer(self, topic: str, group: str, name: str) -> KafkaGroupConsumer:
        return KafkaGroupConsumer(self, topic, group, name)

    async def group_info(self, topic: str, group: str) -> GroupInfo | None:
        """Lag is the events after the committed offsets, those being delivered included (only
        members know which they hold: ``pending`` is None)."""
        tps = await self._partitions(names.kafka_topic(self.prefix, topic))
        committed = await self._committed(names.kafka_group(self.prefix, group), tps)
        if not committed:
            return None
        ends = await self._ends(tps)
        members = None
        with contextlib.suppress(*_ERRORS):
            described = await self._admin.describe_consumer_groups([names.kafka_group(self.prefix, group)])
            members = len(described[0].groups[0][5]) if described and described[0].groups else None
        lag = sum(max(0, ends[tp] - committed.get(tp, ends[tp])) for tp in tps)
        last = ",".join(_position(tp.partition, committed.get(tp, 0)) for tp in tps)
        return GroupInfo(group, members, None, last, lag)

    # -- reading by position ---------------------------------------------------------------------
    async def _bounds(self, kafka_topic: str) -> dict[TopicPartition, tuple[int, int]]:
        tps = await self._partitions(kafka_topic)
        if not tps:
            return {}
        try:
            starts = await self._reader.beginning_offsets(tps)
        except _ERRORS as error:
            raise StoreError(f"{self.label}: offsets failed: {error!r}") from error
        ends = await self._ends(tps)
        return {tp: (starts[tp], ends[tp]) for tp in tps}

    async def _time_offsets(self, tps: list[TopicPartition], at_ms: int,
                             ends: dict[TopicPartition, int]) -> dict[TopicPartition, int]:
        """Per partition, the offset of the first record appended at or after ``at_ms`` (the end
        when there is none). The broker's answer is checked forward: some (Tansu) answer with the
        start of the batch that holds the time, not the record."""
        try:
            found = await self._reader.offsets_for_times(dict.fromkeys(tps, at_ms))
        except _ERRORS as error:
            raise StoreError(f"{self.label}: offsets by time failed: {error!r}") from error
        out = {}
        for tp in tps:
            offset = found[tp].offset if found.get(tp) else ends[tp]
            while offset < ends[tp]:
                records = await self._fetch(tp, offset, ends[tp], 500)
                if not records:
                    break
                first = next((r.offset for r in records if r.timestamp >= at_ms), None)
                if first is not None:
                    offset = first
                    break
                offset = records[-1].offset + 1
            out[tp] = min(offset, ends[tp])
        return out

    async def read_range(
        self, topic: str, *, count: int = 100, newest_first: bool = False, after: str | None = None,
        before: str | None = None, from_ms: int | None = None, to_ms: int | None = None,
    ) -> list[StoredEntry]:
        """Per partition a window of offsets, merged by append time. A position bound applies to
        its own partition by offset and to the others by its event's time."""
        bounds = await self._bounds(names.kafka_topic(self.prefix, topic))
        if not bounds or count <= 0:
            return []
        tps = list(bounds)
        low = {tp: b[0] for tp, b in bounds.items()}
        high = {tp: b[1] for tp, b in bounds.items()}
        ends = dict(high)
        if from_ms is not None:
            for tp, offset in (await self._time_offsets(tps, from_ms, ends)).items():
                low[tp] = max(low[tp], offset)
        if to_ms is not None:
            for tp, offset in (await self._time_offsets(tps, to_ms, ends)).items():
                high[tp] = min(high[tp], offset)
        for position, is_after in ((after, True), (before, False)):
            if position is None:
                continue
            partition, offset = _parse_position(position)
            own = TopicPartition(tps[0].topic, partition)
            [record] = await self._fetch(own, offset, offset + 1, 1) or [None]
            if record is not None and len(tps) > 1:
                at = await self._time_offsets(tps, record.timestamp + (1 if is_after else 0), ends)
                for tp in tps:
                    if tp != own:
                        if is_after:
                            low[tp] = max(low[tp], at[tp])
                        else:
                            high[tp] = min(high[tp], at[tp])
            if own in low:
                if is_after:
                    low[own] = max(low[own], offset + 1)
                else:
                    high[own] = min(high[own], offset)
        rows = []
        for tp in tps:
            if low[tp] >= high[tp]:
                continue
            start = max(low[tp], high[tp] - count) if newest_first else low[tp]
            for record in await self._fetch(tp, start, high[tp], count):
                rows.append((record.timestamp, tp.partition, record.offset, record.value))
        chosen = heapq.nlargest(count, rows) if newest_first else heapq.nsmallest(count, rows)
        return [StoredEntry(_position(p, o), topic, value, ts) for ts, p, o, value in chosen]

    async def length(self, topic: str) -> int:
        bounds = await self._bounds(names.kafka_topic(self.prefix, topic))
        return sum(end - start for start, end in bounds.values())

    async def trim(self, topic: str, retention: Retention) -> int:
        """Deletes records below the limits (DeleteRecords); a broker without it (Tansu) raises
        :class:`StoreUnsupported`, and only the topic's ``retention.ms`` applies there."""
        if retention.unlimited:
            return 0
        bounds = await self._bounds(names.kafka_topic(self.prefix, topic))
        if not bounds:
            return 0
        tps = list(bounds)
        cut = {tp: start for tp, (start, _end) in bounds.items()}
        if retention.max_length is not None:
            per_partition = -(-retention.max_length // len(tps))
            for tp, (_start, end) in bounds.items():
                cut[tp] = max(cut[tp], end - per_partition)
        if retention.max_age_seconds is not None:
            at = await self._time_offsets(tps, int(time.time() * 1000) - retention.max_age_seconds * 1000,
                                          {tp: b[1] for tp, b in bounds.items()})
            for tp in tps:
                cut[tp] = max(cut[tp], at[tp])
        wanted = {tp: RecordsToDelete(offset) for tp, offset in cut.items() if offset > bounds[tp][0]}
        if not wanted:
            return 0
        try:
            await self._admin.delete_records(wanted)
        except (KafkaConnectionError, OSError) as error:
            if await self.ping():  # up, but it dropped the connection rather than answer (Tansu)
                raise StoreUnsupported(f"{self.label}: the broker does not delete records (DeleteRecords); "
                                       "only the topic's retention.ms applies there") from error
            raise StoreError(f"{self.label}: trim failed: {error!r}") from error
        except KafkaError as error:
            raise StoreError(f"{self.label}: trim failed: {error!r}") from error
        return sum(cut[tp] - bounds[tp][0] for tp in wanted)

    # -- dead letters ----------------------------------------------------------------------------
    async def _dead_letter(self, group: str, entry: StoredEntry, reason: str, status: int | None,
                           attempts: int) -> str:
        dlq = names.kafka_dlq_topic(self.prefix, group)
        await self._ensure_topic(dlq, partitions=1)
        headers = [("mesh-topic", entry.topic.encode()), ("mesh-reason", reason.encode()),
                   ("mesh-status", b"" if status is None else str(status).encode()),
                   ("mesh-attempts", str(attempts).encode()), ("mesh-source-id", entry.id.encode()),
                   ("mesh-at", str(int(time.time() * 1000)).encode())]
        try:
            result = await self._producer.send_and_wait(dlq, entry.event, key=uuid.uuid4().hex.encode(),
                                                        headers=headers)
        except _ERRORS as error:
            raise StoreError(f"{self.label}: dead_letter failed: {error!r}") from error
        return _position(result.partition, result.offset)

    async def _all_dead_letters(self, group: str) -> list[tuple[DeadLetter, bytes]]:
        """Every dead letter not put back, oldest first, with its key (tombstones folded away)."""
        dlq = names.kafka_dlq_topic(self.prefix, group)
        bounds = await self._bounds(dlq)
        letters: dict[bytes, tuple[DeadLetter, bytes]] = {}
        for tp, (start, end) in bounds.items():
            for record in await self._fetch(tp, start, end, end - start):
                if record.value is None:
                    letters.pop(record.key, None)
                    continue
                h = {k: v.decode() for k, v in record.headers}
                status = h.get("mesh-status", "")
                letters[record.key] = (DeadLetter(
                    id=_position(tp.partition, record.offset), topic=h.get("mesh-topic", ""), event=record.value,
                    reason=h.get("mesh-reason", ""), status=int(status) if status.isdigit() else None,
                    attempts=int(h.get("mesh-attempts") or 0), source_id=h.get("mesh-source-id", ""),
                    at_ms=int(h.get("mesh-at") or 0)), record.key)
        return list(letters.values())

    async def dead_letters(self, group: str, *, count: int = 50, before: str | None = None) -> list[DeadLetter]:
        letters = [d for d, _key in await self._all_dead_letters(group)]
        if before is not None:
            letters = [d for d in letters if _parse_position(d.id) < _parse_position(before)]
        return list(reversed(letters))[:count]

    async def redeliver(self, group: str, ids: Sequence[str] | None, *, by: str) -> int:
        """Each one is appended to the redelivery topic, then tombstoned among the dead letters
        (two operators putting the same one back at the same moment may deliver it twice)."""
        letters = await self._all_dead_letters(group)
        wanted = None if ids is None else set(ids)
        chosen = [(d, key) for d, key in letters if wanted is None or d.id in wanted]
        redeliver = names.kafka_redeliver_topic(self.prefix, group)
        dlq = names.kafka_dlq_topic(self.prefix, group)
        await self._ensure_topic(redeliver, partitions=1)
        try:
            for letter, key in chosen:
                await self._producer.send_and_wait(redeliver, letter.event, headers=[
                    ("mesh-dlq-id", letter.id.encode()), ("mesh-by", by.encode())])
                await self._producer.send_and_wait(dlq, None, key=key)
        except _ERRORS as error:
            raise StoreError(f"{self.label}: redeliver failed: {error!r}") from error
        return len(chosen)

    # -- life ------------------------------------------------------------------------------------
    async def ping(self) -> bool:
        try:
            await self._start()
            async with asyncio.timeout(self.connect_timeout_s):
                await self._admin.list_topics()
            return True
        except (StoreError, *_ERRORS, TimeoutError):
            return False

    async def close(self) -> None:
        for client in (self._producer, self._reader):
            if client is not None:
                with contextlib.suppress(*_ERRORS):
                    await client.stop()
        if self._admin is not None:
            with contextlib.suppress(*_ERRORS):
                await self._admin.close()
        self._producer = self._admin = self._reader = None


def _own_sticky_assignor() -> type[StickyPartitionAssignor]:
    """aiokafka's sticky assignor remembers a member's last assignment on the class: two
    consumers in one process (a member's topic and redelivery consumers) would each announce
    the other's, and lose what they hold at every rebalance. A class per consumer keeps it apart."""
    return type("MemberStickyAssignor", (StickyPartitionAssignor,),
                {"member_assignment": None, "generation": StickyPartitionAssignor.DEFAULT_GENERATION_ID})


class _Partition:
    """What a member has read of one partition and not finished, in offset order."""

    __slots__ = ("done", "held")

    def __init__(self) -> None:
        self.done: dict[int, bool] = {}  # read offsets, oldest first: finished (acked, dead-lettered)?
        self.held: set[int] = set()  # of those, the ones a caller holds now

    def commit_position(self) -> int | None:
        """Drop the finished prefix; the offset to commit (the first unfinished), None if unchanged."""
        moved = None
        for offset in list(self.done):
            if not self.done[offset]:
                return offset if moved is not None else None
            del self.done[offset]
            moved = offset + 1
        return moved


class KafkaGroupConsumer(ConsumerRebalanceListener):
    """One member of a subscription's groups: one Kafka consumer for the topic, one for its
    redelivery topic (see :func:`~.names.kafka_redeliver_group`)."""

    orders_itself = True  # one member per partition: an ordered subscription has one partition

    def __init__(self, store: KafkaStore, topic: str, group: str, name: str) -> None:
        self.store = store
        self.topic = topic
        self.group = group
        self.name = name
        self._kafka_topic = names.kafka_topic(store.prefix, topic)
        self._consumers: dict[str, AIOKafkaConsumer] = {}  # by Kafka topic
        self._parts: dict[TopicPartition, _Partition] = {}
        self._revoked: dict[TopicPartition, _Partition] = {}  # during a rebalance
        self._committing = asyncio.Lock()

    async def _start(self) -> list[AIOKafkaConsumer]:
        if not self._consumers:
            await self.store._start()
            prefix = self.store.prefix
            timeout_ms = int(self.store.visibility_timeout_s * 1000)
            pairs = ((self._kafka_topic, names.kafka_group(prefix, self.group)),
                     (names.kafka_redeliver_topic(prefix, self.group), names.kafka_redeliver_group(prefix, self.group)))
            started = {}
            try:
                for kafka_topic, kafka_group in pairs:
                    consumer = AIOKafkaConsumer(
                        bootstrap_servers=self.store.bootstrap, group_id=kafka_group, client_id=self.name,
                        enable_auto_commit=False, auto_offset_reset="earliest", session_timeout_ms=timeout_ms,
                        heartbeat_interval_ms=max(100, timeout_ms // 3), rebalance_timeout_ms=timeout_ms,
                        max_poll_interval_ms=max(timeout_ms, 300_000),
                        partition_assignment_strategy=(_own_sticky_assignor(),),
                    )
                    consumer.subscribe([kafka_topic], listener=self)
                    await consumer.start()
                    started[kafka_topic] = consumer
            except _ERRORS as error:
                for consumer in started.values():
                    with contextlib.suppress(*_ERRORS):
                        await consumer.stop()
                raise StoreError(f"{self.store.label}: joining group {self.group} failed: {error!r}") from error
            self._consumers = started
        return list(self._consumers.values())

    # Rebalance listener. Every rebalance revokes all partitions and assigns them again; the
    # sticky assignor gives a member back what it had, so what it holds stays its own (a new
    # member joining takes nothing it holds). What it finished is committed before any revoke.
    async def on_partitions_revoked(self, revoked) -> None:
        with contextlib.suppress(StoreError):
            await self._commit([tp for tp in revoked if tp in self._parts])
        for tp in revoked:
            if tp in self._parts:
                self._revoked[tp] = self._parts.pop(tp)

    async def on_partitions_assigned(self, assigned) -> None:
        for tp in assigned:
            self._parts[tp] = self._revoked.pop(tp, None) or self._parts.get(tp) or _Partition()
        for tp in [tp for tp in self._revoked if tp.topic in {a.topic for a in assigned}]:
            del self._revoked[tp]  # gone to another member, which delivers their events again

    def _source(self, tp: TopicPartition) -> str:
        return "topic" if tp.topic == self._kafka_topic else "redeliver"

    async def read(self, count: int, block_ms: int | None = None) -> list[Held]:
        topic_consumer, redeliver_consumer = await self._start()
        try:
            batches = await redeliver_consumer.getmany(timeout_ms=0, max_records=count)
            if not batches:
                batches = await topic_consumer.getmany(timeout_ms=block_ms or 0, max_records=count)
        except _ERRORS as error:
            raise StoreError(f"{self.store.label}: read failed: {error!r}") from error
        held = []
        for tp, records in batches.items():
            part = self._parts.setdefault(tp, _Partition())
            for record in records:
                if record.offset in part.held or part.done.get(record.offset):
                    continue  # re-read after a release: still held, or finished meanwhile
                part.done.setdefault(record.offset, False)
                part.held.add(record.offset)
                held.append(Held(StoredEntry(_position(tp.partition, record.offset), self.topic, record.value,
                                             record.timestamp), 0, self._source(tp), token=tp))
        return held

    async def claim_stale(self, count: int) -> list[Held]:
        return []  # a dead member's partitions come to a live one, which reads on from the commit

    async def take_over(self, count: int) -> list[Held]:
        return []

    async def renew(self, held: Sequence[Held], *, attempts: int | None = None) -> None:
        """The lease is the membership, which the client's heartbeats keep: nothing to send."""
        if not self._consumers:
            raise StoreError(f"{self.store.label}: the member {self.name} has not joined its group")

    async def release(self, held: Sequence[Held]) -> None:
        """Forget them here and seek back, so that the next reads bring them again."""
        lowest: dict[TopicPartition, int] = {}
        for h in held:
            tp = h.token
            part = self._parts.get(tp)
            _partition, offset = _parse_position(h.entry.id)
            if part is None or offset not in part.held:
                continue
            part.held.discard(offset)
            lowest[tp] = min(offset, lowest.get(tp, offset))
        for tp, offset in lowest.items():
            consumer = self._consumers.get(tp.topic)
            if consumer is not None:
                with contextlib.suppress(*_ERRORS, AssertionError, ValueError):
                    consumer.seek(tp, offset)

    async def ack(self, held: Sequence[Held]) -> None:
        """Mark them finished and commit what that allows; raises :class:`HeldLost` (after
        committing the others) for those whose partition moved to another member meanwhile."""
        touched, lost = [], []
        for h in held:
            tp = h.token
            part = self._parts.get(tp)
            _partition, offset = _parse_position(h.entry.id)
            if part is None or offset not in part.done:
                lost.append(h.entry.id)
                continue
            part.done[offset] = True
            part.held.discard(offset)
            touched.append(tp)
        await self._commit(list(dict.fromkeys(touched)))
        if lost:
            raise HeldLost(f"{self.store.label}: {', '.join(lost[:5])}{' …' if len(lost) > 5 else ''} of "
                           f"{self._kafka_topic} no longer this member's (its partition moved to another member, "
                           "which delivers them again)", lost)

    async def _commit(self, tps: list[TopicPartition]) -> None:
        async with self._committing:
            by_consumer: dict[str, dict[TopicPartition, OffsetAndMetadata]] = {}
            for tp in tps:
                part = self._parts.get(tp)
                position = part.commit_position() if part is not None else None
                if position is not None:
                    by_consumer.setdefault(tp.topic, {})[tp] = OffsetAndMetadata(position, "")
            for kafka_topic, offsets in by_consumer.items():
                consumer = self._consumers.get(kafka_topic)
                if consumer is None:
                    continue
                try:
                    await consumer.commit(offsets)
                except _ERRORS as error:
                    raise StoreError(f"{self.store.label}: commit failed: {error!r}") from error

    async def dead_letter(self, held: Held, reason: str, status: int | None, attempts: int) -> str:
        dlq_id = await self.store._dead_letter(self.group, held.entry, reason, status, attempts)
        await self.ack([held])
        return dlq_id

    async def close(self) -> None:
        if self._consumers:
            with contextlib.suppress(StoreError):
                await self._commit(list(self._parts))
            for consumer in self._consumers.values():
                with contextlib.suppress(*_ERRORS):
                    await consumer.stop()
            self._consumers = {}
        self._parts.clear()
