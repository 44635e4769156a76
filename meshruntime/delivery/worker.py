"""One subscription's delivery loop: read, filter, push, retry, acknowledge or dead-letter.

A worker holds at most ``max_in_flight`` events at once (1 delivers strictly in order, retries
included). It takes events, oldest first, from: what it acquired by recovery or takeover (its
own pending entries after a restart or a pause, entries a dead runtime left pending for longer
than the visibility timeout), the subscription's redelivery stream, and the topic.

Pausing or stopping never cuts an HTTP attempt short: the loop stops taking events, attempts
under way finish (within the subscription's timeout), and events waiting for a retry are left
pending in the store, to be picked up when the subscription resumes (or by another runtime).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

import orjson

from meshruntime.cloudevents import STRUCTURED_CONTENT_TYPE, binary_from_stored
from meshruntime.replies import ReplyPoster
from meshruntime.store import StoredEntry, StoreError

from .journal import JourneyWriter
from .lock import OrderLock
from .metrics import SubscriptionMetrics
from .retry import Verdict, retry_wait_seconds
from .spec import SubscriptionSpec
from .status import StatusReport
from .streams import Acquired, DeliveryStream, RedeliveryStream, TopicStream, id_key
from .webhook import AttemptResult, WebhookClient

log = logging.getLogger(__name__)

__all__ = ["DeliverySettings", "SubscriptionWorker"]

ACKED_MEMORY = 4096


@dataclass(frozen=True, slots=True)
class DeliverySettings:
    """Knobs of the engine (not of a subscription: those come from the MeshConfig document)."""

    # Pending entries idle this long belong to a runtime presumed dead and are taken over.
    # Live runtimes renew their entries every third of it, so only a dead (or frozen) one loses them.
    visibility_timeout_s: float = 30.0
    block_ms: int = 1000  # a read waits this long for new events (and a pause/stop waits for a read)
    redeliver_poll_s: float = 1.0  # how often a busy worker looks at its redelivery stream
    claim_batch: int = 100
    backlog_limit: int = 1000  # acquired entries kept in memory before taking more
    metrics_interval_s: float = 5.0  # lag and pending gauges
    status_interval_s: float = 2.0  # the status record the portal reads (see .status)
    # Acknowledgements and journey steps wait this long to share a round trip with others: at
    # 1,000 events/s that is ten per write instead of one. They are off the latency path (the
    # subscriber has its answer), and a crash inside the window only means a redelivery.
    flush_delay_s: float = 0.01
    ack_retries: int = 20  # failed writes of acks retried (0.1 s, doubling up to 2 s) before giving up

    @property
    def lease_interval_s(self) -> float:
        return max(0.05, self.visibility_timeout_s / 3)


@dataclass(slots=True)
class Delivery:
    stream: DeliveryStream
    entry: StoredEntry
    attempts: int  # attempts already made (or under way when a runtime died)
    recorded: int  # the attempt count the store has for this entry (its delivery count)
    missing: bool = False  # the event is gone from the stream (trimmed before delivery)
    key: tuple[str, str] = field(init=False)

    def __post_init__(self) -> None:
        self.key = (self.stream.kind, self.entry.id)


@dataclass(slots=True)
class _Prepared:
    """What an event's attempts need, read from the stored event once (see _prepare); ``result``
    is the first attempt's when it was made without a task and the task carries on after it."""

    spec: SubscriptionSpec
    attributes: dict
    event_id: str
    request: tuple[str, dict[str, str], bytes]
    result: AttemptResult | None = None


@dataclass(frozen=True, slots=True)
class _DeadLetter:
    """An event that goes to the dead-letter stream without an attempt."""

    event_id: str | None
    reason: str


def _stream_time_ms(entry_id: str) -> int:
    return int(entry_id.partition("-")[0])


class AttemptObserver(Protocol):
    """Told of every attempt (tracing): ``start`` may add headers and returns what ``end`` gets."""

    def start(self, spec: SubscriptionSpec, attributes: dict, attempt: int, headers: dict[str, str]) -> Any: ...

    def end(self, started: Any, result: AttemptResult) -> None: ...



class SubscriptionWorker:
    def __init__(
        self,
        spec: SubscriptionSpec,
        *,
        topic: TopicStream,
        redeliver: RedeliveryStream,
        start_id: str,
        dlq_key: str,
        lock: OrderLock,
        http: WebhookClient,
        journal: JourneyWriter,
        metrics: SubscriptionMetrics,
        settings: DeliverySettings,
        replies: ReplyPoster | None = None,
        tracer: AttemptObserver | None = None,
    ) -> None:
        self.spec = spec
        self.topic = topic
        self.redeliver = redeliver
        self.start_id = start_id
        self.dlq_key = dlq_key
        self.lock = lock  # taken only while the subscription is ordered (max in flight 1)
        self.http = http
        self.journal = journal
        self.metrics = metrics
        self.settings = settings
        self.replies = replies
        self.tracer = tracer  # told of each attempt's start and end (meshruntime.skywalking)
        self.ready = asyncio.Event()  # the consumer groups exist
        self.report = StatusReport()  # taken and written by the manager every few seconds
        self._streams: tuple[DeliveryStream, ...] = (topic, redeliver)
        self._held: dict[tuple[str, str], Delivery] = {}
        self._backlog: deque[Delivery] = deque()  # acquired (recovered, claimed): first in line
        self._ahead: deque[Delivery] = deque()  # new events read ahead of free slots (see _take_new)
        self._drained = False  # the last read of the topic got fewer events than it asked for
        self._refilling = False
        self._acks: dict[str, list[str]] = {}
        self._acking: set[tuple[str, str]] = set()
        # acknowledged lately: a page of own pending entries read just before the ack landed
        # must not bring them back (keys only, the last ACKED_MEMORY to twice that, oldest first)
        self._acked: dict[tuple[str, str], None] = {}
        self._ack_task: asyncio.Task | None = None
        self._in_flight = 0
        self._deliveries: set[asyncio.Task] = set()
        self._wake = asyncio.Event()
        self._halt = asyncio.Event()  # set while paused or stopping: cuts retry waits short
        self._stopping = False
        # Tasks here are stopped by this event, never by cancel(): redis-py (8.1) often swallows
        # a cancellation that arrives during a command, and the task would carry on.
        self._stopped = asyncio.Event()
        self._recover_after: dict[str, str | None] = {}
        self._claim_everything = False  # set when this runtime takes an ordered subscription's lease
        self._next_redeliver_read = 0.0
        self._runner: asyncio.Task | None = None
        self._maintainer: asyncio.Task | None = None
        self._store_down_since: float | None = None
        self._rng = random.Random()

    # -- control (called by the manager) ---------------------------------------------------------
    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def held(self) -> int:
        return len(self._held)

    def start(self) -> None:
        if not self.spec.active:
            self._halt.set()
        name = self.spec.id
        self._runner = asyncio.create_task(self._run(), name=f"delivery-{name}")
        self._maintainer = asyncio.create_task(self._maintain(), name=f"delivery-{name}-leases")

    def update(self, spec: SubscriptionSpec) -> None:
        """Apply a changed subscription: the next attempt uses its URL, secret, mode and limits."""
        was_active = self.spec.active
        self.spec = spec
        if was_active and not spec.active:
            log.info("subscription %s paused: finishing %d attempts under way", spec.id, self._in_flight)
            self._halt.set()
        elif spec.active and not was_active:
            log.info("subscription %s resumed", spec.id)
            self._halt.clear()
            self._recover_after = {}  # what the pause left pending is taken up again first
        self._wake.set()

    async def stop(self, *, remove: bool = False) -> None:
        """Stop gracefully: no new events, attempts under way finish, then (``remove``) the
        subscription's groups and its redelivery stream are deleted (it was revoked)."""
        self._stopping = True
        self._stopped.set()
        self._halt.set()
        self._wake.set()
        if self._runner is not None:
            await asyncio.gather(self._runner, return_exceptions=True)
        while self._in_flight > 0:  # attempts under way finish (first attempts run without a task)
            if self._deliveries:
                await asyncio.gather(*list(self._deliveries), return_exceptions=True)
            else:
                self._wake.clear()
                await self._wake.wait()
        if self._maintainer is not None:
            await asyncio.gather(self._maintainer, return_exceptions=True)
        await self._drain_acks()
        await self.lock.release()
        if remove:
            for stream in self._streams:
                for attempt in range(3):
                    try:
                        await stream.remove()
                        break
                    except StoreError as error:
                        log.warning("removing %s of revoked subscription %s failed (%s)%s", stream.kind,
                                    self.spec.id, error, "; retrying" if attempt < 2 else "")
                        await asyncio.sleep(0.2 * (attempt + 1))

    def take_report(self) -> StatusReport:
        report, self.report = self.report, StatusReport()
        return report

    # -- the loop --------------------------------------------------------------------------------
    async def _run(self) -> None:
        await self._setup()
        while not self._stopping:
            self._wake.clear()
            spec = self.spec
            if not spec.active:
                await self._wake.wait()
                continue
            free = spec.max_in_flight - self._in_flight
            if free <= 0 and not self._ahead_low(spec):
                await self._wake.wait()
                continue
            try:
                if spec.max_in_flight == 1 and not self.lock.held:
                    if not await self.lock.refresh():
                        # another runtime delivers this ordered subscription: stand by, try later
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(self._wake.wait(), self.settings.lease_interval_s)
                        continue
                    # whatever the previous holder left pending comes first, in order
                    self._claim_everything = True
                    self._halt.clear()
                await self._take(free)
                self._store_up()
            except StoreError as error:
                if "NOGROUP" in str(error):  # removed under us (an older config elsewhere?): recreate
                    await self._setup()
                    continue
                await self._store_down(error)

    async def _take(self, free: int) -> None:
        """Start up to ``free`` deliveries from the first source that has something."""
        if self._claim_everything:
            for stream in self._streams:
                self._acquire(stream, await stream.claim_all(self.settings.claim_batch))
            self._claim_everything = False
        recovered = True
        if not self._backlog:
            recovered = await self._recover_own(free)
        if self._backlog or not recovered:
            backlog, limit = self._backlog, self.spec.max_in_flight
            self._refilling = True  # see _start_in_free_slots
            try:
                while backlog and self._in_flight < limit:
                    self._start(backlog.popleft())
            finally:
                self._refilling = False
            return
        now = time.monotonic()
        if free > 0 and now >= self._next_redeliver_read:
            self._next_redeliver_read = now + self.settings.redeliver_poll_s
            entries = await self.redeliver.read_new(free, None)
            if entries:
                self._next_redeliver_read = 0.0  # there may be more: read on until it is empty
                self._start_new(self.redeliver, entries)
                return
        await self._take_new(free)

    async def _take_new(self, free: int) -> None:
        """Start up to ``free`` new events of the topic, first those read ahead.

        Unordered subscriptions read up to ``max_in_flight`` events ahead of their free slots
        (held like events under way: pending, their leases renewed). An attempt that ends starts
        the next of them at once (_finish), and the loop reads more while half of them are left,
        so that slots do not wait for a round trip to the store; at loopback speeds that wait,
        not the push, would set the delivery rate. Ordered subscriptions read one at a time, as before."""
        ahead, spec = self._ahead, self.spec
        started = bool(ahead) and self._in_flight < spec.max_in_flight
        self._start_in_free_slots(())
        free = max(0, spec.max_in_flight - self._in_flight)
        want = free + (spec.max_in_flight if spec.max_in_flight > 1 else 0) - len(ahead)
        if want <= 0:
            return
        block = self.settings.block_ms if free > 0 and not started else None  # wait only when idle
        entries = await self.topic.read_new(want, block)
        self._drained = len(entries) < want  # caught up: read ahead again once a read fills up
        if not entries:
            if block is not None:
                self._next_redeliver_read = 0.0  # idle: the redelivery stream is looked at every block
            return
        if self._halt.is_set():
            return  # paused (or stopping) while the read waited: see _start_new
        topic = self.topic
        self._start_in_free_slots([Delivery(topic, entry, 0, 1) for entry in entries])

    def _start_in_free_slots(self, deliveries: Iterable[Delivery]) -> None:
        """Queue ``deliveries`` behind what was read ahead, then start from the front as far as
        slots are free now (attempts that ended during a read have started others, see _refill);
        the rest is held ahead. One loop, so an event that ends at once (filtered) frees its
        slot for the next here, and nothing nested starts more than the slots allow."""
        ahead, held, limit = self._ahead, self._held, self.spec.max_in_flight
        for delivery in deliveries:
            held[delivery.key] = delivery
            ahead.append(delivery)
        self._refilling = True
        try:
            while ahead and self._in_flight < limit:
                self._start(ahead.popleft())
        finally:
            self._refilling = False

    def _ahead_low(self, spec: SubscriptionSpec) -> bool:
        """Whether to read ahead although every slot is busy (see _take_new)."""
        return (spec.max_in_flight > 1 and not self._drained and len(self._ahead) <= spec.max_in_flight // 2
                and not self._backlog)

    def _refill(self) -> None:
        """Start events read ahead in the slots free now (called as attempts end)."""
        if self._refilling:  # an event started here ended at once (filtered): the outer call goes on
            return
        self._refilling = True
        try:
            ahead, spec = self._ahead, self.spec
            while (ahead and self._in_flight < spec.max_in_flight and spec.active and not self._backlog
                   and not self._halt.is_set() and not self._stopping):
                self._start(ahead.popleft())
        finally:
            self._refilling = False

    def _start_new(self, stream: DeliveryStream, entries: list[StoredEntry]) -> None:
        if self._halt.is_set():
            # paused (or stopping) while the read waited: they stay pending, and are taken up
            # first on resume (or by another runtime after the visibility timeout)
            return
        self._start_in_free_slots([Delivery(stream, entry, 0, 1) for entry in entries])

    async def _setup(self) -> None:
        """Create the consumer groups, retrying while the store is away."""
        while not self._stopping:
            try:
                await self.topic.ensure_group(self.start_id)
                await self.redeliver.ensure_group("0")
                self.ready.set()
                self._store_up()
                return
            except StoreError as error:
                await self._store_down(error)

    async def _store_down(self, error: Exception) -> None:
        now = time.monotonic()
        if self._store_down_since is None:
            self._store_down_since = now
            log.warning("subscription %s: event store unavailable (%s); retrying", self.spec.id, error)
        waited = now - self._store_down_since
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._halt_or_stop(), min(2.0, 0.05 + waited / 4) * self._rng.uniform(0.5, 1))

    async def _halt_or_stop(self) -> None:
        while not self._stopping:
            self._wake.clear()
            await self._wake.wait()

    def _store_up(self) -> None:
        if self._store_down_since is not None:
            log.info("subscription %s: event store reachable again", self.spec.id)
            self._store_down_since = None

    async def _recover_own(self, free: int) -> bool:
        """Take up this consumer's own pending entries, a page at a time, before anything new;
        True once every stream has been read to its end. Nothing new is read until then, so
        the pending list stops growing and the recovery ends."""
        for stream in self._streams:
            after = self._recover_after.get(stream.kind, "0")
            if after is None:
                continue
            acquired, next_after = await stream.read_own_pending(after, max(free, self.settings.claim_batch))
            self._recover_after[stream.kind] = next_after
            self._acquire(stream, acquired)
            return False
        return True

    def _acquire(self, stream: DeliveryStream, acquired: Acquired) -> None:
        for entry, attempts in acquired.entries:
            key = (stream.kind, entry.id)
            if key in self._held or key in self._acking or key in self._acked:
                continue
            delivery = Delivery(stream, entry, attempts, attempts + 1)
            self._held[key] = delivery
            self._backlog.append(delivery)
        for entry_id, attempts in acquired.missing:
            key = (stream.kind, entry_id)
            if key in self._held or key in self._acking or key in self._acked:
                continue
            delivery = Delivery(stream, StoredEntry(entry_id, stream.topic, b""), attempts, attempts + 1,
                                missing=True)
            self._held[key] = delivery
            self._backlog.append(delivery)
        if self.spec.max_in_flight == 1 and len(self._backlog) > 1:  # ordered: oldest first
            self._backlog = deque(sorted(self._backlog, key=lambda d: (d.stream.kind != "topic",
                                                                       id_key(d.entry.id))))

    def _start(self, delivery: Delivery) -> None:
        self._held[delivery.key] = delivery
        self._in_flight += 1
        try:
            prepared = self._prepare(delivery)
            if prepared is None:  # filtered out
                self._finish(delivery)
                return
            if prepared.__class__ is _Prepared and delivery.recorded > delivery.attempts:
                self._send_first(delivery, prepared)
                return
        except Exception:  # a bug: log it, leave the event pending (another attempt after a claim)
            log.exception("subscription %s: delivery of %s failed", self.spec.id, delivery.entry.id)
            self._finish(delivery)
            return
        self._in_task(delivery, prepared)

    def _in_task(self, delivery: Delivery, prepared: _Prepared | _DeadLetter) -> None:
        task = asyncio.create_task(self._deliver(delivery, prepared))
        self._deliveries.add(task)
        task.add_done_callback(self._deliveries.discard)

    def _finish(self, delivery: Delivery) -> None:
        self._held.pop(delivery.key, None)
        self._in_flight -= 1
        if self._ahead:
            self._refill()
        self._wake.set()

    # -- one event -------------------------------------------------------------------------------
    # The usual case (a new event, one attempt, 2xx) runs without a task: the attempt starts in
    # _start and its answer is handled in a callback (_first_answered), which acknowledges it.
    # Anything else (a failed attempt, an event to dead-letter, a recorded attempt count to raise)
    # goes on in a task, _deliver_one, which has time for waits and the store. Both start from
    # what _prepare read of the event.
    def _prepare(self, d: Delivery) -> _Prepared | _DeadLetter | None:
        """Read the stored event for its attempts: what they need, or why it is dead-lettered
        without one, or None when the subscription's filters leave it out (acknowledged here)."""
        if d.missing:
            return _DeadLetter(None, "expired: the event was removed by the topic's retention before it could "
                                     "be delivered")
        try:
            attributes = orjson.loads(d.entry.event)
            event_id = attributes["id"]
            if event_id.__class__ is not str:
                raise TypeError("id is not a string")
        except (orjson.JSONDecodeError, TypeError, KeyError) as error:
            return _DeadLetter(None, f"invalid: the stored event is not a CloudEvent ({error})")
        spec = self.spec
        if not spec.matches(attributes):
            self._filtered(d)
            return None
        if d.attempts >= spec.max_attempts:  # exhausted before a crash; dead-letter what we know
            return _DeadLetter(event_id, f"exhausted: {d.attempts} attempts made, the last one's result unknown "
                                         "(the runtime making it stopped)")
        return _Prepared(spec, attributes, event_id, _request(spec.mode, d.entry.event, attributes))

    def _send_first(self, d: Delivery, prepared: _Prepared) -> None:
        spec, request = prepared.spec, prepared.request
        headers = self._headers(spec, d, request, d.attempts + 1)
        traced = self.tracer and self.tracer.start(spec, prepared.attributes, d.attempts + 1, headers)
        self.http.send(spec.url, headers, request[2], secret=spec.secret,
                       timeout_s=spec.timeout_s, done=partial(self._first_answered, d, prepared, traced))

    def _first_answered(self, d: Delivery, prepared: _Prepared, traced, result: AttemptResult) -> None:
        try:
            if traced:
                self.tracer.end(traced, result)
            d.attempts += 1
            prepared.result = result
            if self._attempted(d, prepared.spec, prepared.event_id, result):
                self._finish(d)
            else:
                self._in_task(d, prepared)  # retried or dead-lettered from there
        except Exception:  # a bug: as in _deliver
            log.exception("subscription %s: delivery of %s failed", self.spec.id, d.entry.id)
            self._finish(d)

    async def _deliver(self, delivery: Delivery, prepared: _Prepared | _DeadLetter) -> None:
        try:
            await self._deliver_one(delivery, prepared)
        except Exception:  # a bug: log it, leave the event pending (another attempt after a claim)
            log.exception("subscription %s: delivery of %s failed", self.spec.id, delivery.entry.id)
        finally:
            self._finish(delivery)

    async def _deliver_one(self, d: Delivery, prepared: _Prepared | _DeadLetter) -> None:
        """The event from its next attempt (after the first, if ``prepared`` has its result) to its outcome."""
        if prepared.__class__ is _DeadLetter:
            await self._dead_letter(d, prepared.event_id, prepared.reason, None)
            return
        spec, attributes, event_id, request, result = (prepared.spec, prepared.attributes, prepared.event_id,
                                                       prepared.request, prepared.result)
        while True:
            if result is None:
                spec = self.spec  # a config change applies from the next attempt
                if request[0] != spec.mode:
                    request = _request(spec.mode, d.entry.event, attributes)
                n = d.attempts + 1
                if d.recorded < n:
                    with contextlib.suppress(StoreError):  # best effort: the lease is renewed anyway
                        await d.stream.touch([d.entry.id], attempts=n)
                        d.recorded = n
                headers = self._headers(spec, d, request, n)
                traced = self.tracer and self.tracer.start(spec, attributes, n, headers)
                result = await self.http.post(spec.url, headers, request[2], secret=spec.secret,
                                              timeout_s=spec.timeout_s)
                if traced:
                    self.tracer.end(traced, result)
                d.attempts = n
                if self._attempted(d, spec, event_id, result):
                    return
            n = d.attempts
            if result.verdict is Verdict.REJECTED:
                await self._dead_letter(d, event_id, f"rejected: {result.error}", result.status)
                return
            if n >= spec.max_attempts:
                await self._dead_letter(d, event_id, f"exhausted: {n} attempts, the last: {result.error}",
                                        result.status)
                return
            self.metrics.retries.inc()
            self.report.retries += 1
            self.report.error(result.error, result.status)
            wait = retry_wait_seconds(n, spec.backoff_base_ms, spec.backoff_cap_ms, result.retry_after, self._rng)
            if await self._halted_within(wait):
                return  # paused or stopping: stays pending, with its attempts recorded
            result = None

    @staticmethod
    def _headers(spec: SubscriptionSpec, d: Delivery, request: tuple[str, dict[str, str], bytes],
                 n: int) -> dict[str, str]:
        headers = request[1].copy()
        headers["Mesh-Subscription"] = spec.id
        headers["Mesh-Delivery-Attempt"] = str(n)
        headers["Mesh-Delivery-Id"] = f"{spec.id}/{d.stream.kind}/{d.entry.id}"
        return headers

    def _attempted(self, d: Delivery, spec: SubscriptionSpec, event_id: str, result: AttemptResult) -> bool:
        """Record attempt number ``d.attempts``; True if it delivered the event (now acknowledged)."""
        n = d.attempts
        verdict = result.verdict
        if verdict is not Verdict.DELIVERED:
            outcome = "exhausted" if verdict is Verdict.RETRY and n >= spec.max_attempts else verdict.value
            self.journal.add(event_id, "attempt", subscription=spec.id, attempt=n, status=result.status,
                             latency_ms=round(result.latency_s * 1000, 3), error=result.error, outcome=outcome)
            return False
        self.journal.delivered(event_id, spec.id, n, result.status, round(result.latency_s * 1000, 3))
        if spec.responder and self.replies is not None:  # its answer may be the reply to a request
            answer = result.response
            self.replies.offer(d.entry.event, spec.id, answer.status, answer.headers.get("content-type"), answer.body)
        self._ack(d)
        self.metrics.delivered.inc()
        self.report.count_delivered()
        if d.stream.kind == "topic":
            self.metrics.latency.observe(max(0.0, time.time() - _stream_time_ms(d.entry.id) / 1000))
        return True

    def _filtered(self, d: Delivery) -> None:
        self.metrics.filtered.inc()
        self.report.filtered += 1
        self._ack(d)

    async def _halted_within(self, seconds: float) -> bool:
        try:
            await asyncio.wait_for(self._halt.wait(), seconds)
        except TimeoutError:
            return False
        return True

    async def _dead_letter(self, d: Delivery, event_id: str | None, reason: str, status: int | None) -> None:
        """Move the event to the dead-letter stream (and ack it, atomically); retried while the
        store is away, unless the worker is halted, in which case the event stays pending."""
        delay = 0.1
        while True:
            try:
                await d.stream.dead_letter(self.dlq_key, d.entry, reason, status, d.attempts)
                break
            except StoreError as error:
                log.warning("subscription %s: dead-lettering %s failed: %s", self.spec.id, d.entry.id, error)
                if await self._halted_within(delay):
                    return
                delay = min(delay * 2, 5.0)
        code = reason.split(":", 1)[0]
        self.metrics.dead_lettered(code)
        self.report.dead_lettered += 1
        self.report.error(reason, status)
        self.journal.add(event_id, "dead_lettered", subscription=self.spec.id, reason=reason, status=status,
                         attempts=d.attempts)
        log.info("subscription %s: event %s dead-lettered after %d attempts: %s", self.spec.id,
                 event_id or d.entry.id, d.attempts, reason)

    # -- acknowledgements, batched (see DeliverySettings.flush_delay_s) ---------------------------
    def _ack(self, d: Delivery) -> None:
        self._acks.setdefault(d.stream.kind, []).append(d.entry.id)
        self._acking.add(d.key)
        if self._ack_task is None or self._ack_task.done():
            self._ack_task = asyncio.create_task(self._flush_acks())

    async def _flush_acks(self) -> None:
        """Write what has gathered every ``flush_delay_s`` until nothing is left to write."""
        failures = 0
        while self._acks:
            if not self._stopping:
                await asyncio.sleep(self.settings.flush_delay_s)
            batches, self._acks = self._acks, {}
            for stream in self._streams:
                ids = batches.get(stream.kind)
                if not ids:
                    continue
                kind = stream.kind
                try:
                    await stream.ack(ids)
                except StoreError as error:
                    failures += 1
                    if failures > self.settings.ack_retries:
                        # left pending: taken over after the visibility timeout, by this runtime
                        # too, so they must not count as acknowledged here (see _acquire)
                        log.warning("subscription %s: %d acks lost (%s); those events will be "
                                    "delivered again", self.spec.id, len(ids), error)
                        self._acking.difference_update([(kind, entry_id) for entry_id in ids])
                    else:
                        self._acks.setdefault(kind, []).extend(ids)
                        await asyncio.sleep(min(0.05 * 2 ** failures, 2.0))
                    continue
                keys = [(kind, entry_id) for entry_id in ids]
                self._acking.difference_update(keys)
                self._acked.update(dict.fromkeys(keys))
                if len(self._acked) > 2 * ACKED_MEMORY:  # forget the older half, at once
                    self._acked = dict.fromkeys(list(self._acked)[-ACKED_MEMORY:])

    async def _drain_acks(self) -> None:
        if self._acks and (self._ack_task is None or self._ack_task.done()):
            self._ack_task = asyncio.create_task(self._flush_acks())
        if self._ack_task is not None:
            await asyncio.gather(self._ack_task, return_exceptions=True)

    # -- leases, takeover, gauges ----------------------------------------------------------------
    async def _maintain(self) -> None:
        """Every third of the visibility timeout: renew the lease on what this worker holds, and
        (while active) take over entries that a dead runtime left pending; now and then, gauges."""
        settings = self.settings
        next_gauges = 0.0
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopped.wait(), settings.lease_interval_s)
                return
            try:
                await self._renew_leases()
                if self.lock.held and not await self.lock.refresh():
                    # another runtime has it now: take nothing more, and let go of retry waits
                    log.warning("subscription %s: lost the ordered-delivery lease", self.spec.id)
                    self._halt.set()
                if self.spec.active and not self._stopping and (self.spec.max_in_flight > 1 or self.lock.held):
                    await self._claim_stale()
                if time.monotonic() >= next_gauges:
                    next_gauges = time.monotonic() + settings.metrics_interval_s
                    await self._update_gauges()
            except StoreError as error:
                log.debug("subscription %s: maintenance failed: %s", self.spec.id, error)

    async def _renew_leases(self) -> None:
        by_stream: dict[str, list[str]] = {}
        for kind, entry_id in list(self._held):
            by_stream.setdefault(kind, []).append(entry_id)
        for stream in self._streams:
            ids = by_stream.get(stream.kind)
            for start in range(0, len(ids or ()), 500):
                await stream.touch(ids[start:start + 500])

    async def _claim_stale(self) -> None:
        min_idle_ms = int(self.settings.visibility_timeout_s * 1000)
        for stream in self._streams:
            more = True
            while more and len(self._backlog) < self.settings.backlog_limit and not self._stopping:
                acquired, more = await stream.claim_stale(min_idle_ms, self.settings.claim_batch)
                if acquired.entries or acquired.missing:
                    log.info("subscription %s: took over %d events left pending by a stopped runtime",
                             self.spec.id, len(acquired.entries) + len(acquired.missing))
                    self._acquire(stream, acquired)
                    self._wake.set()

    async def _update_gauges(self) -> None:
        info = await self.topic.info()
        redeliver = await self.redeliver.info()
        if info is None:
            return
        pending = info.pending + (redeliver.pending if redeliver else 0)
        self.metrics.pending.set(pending)
        if info.lag is not None:
            self.metrics.lag.set(info.lag + (redeliver.lag or 0 if redeliver else 0))


def _request(mode: str, stored: bytes, attributes: dict) -> tuple[str, dict[str, str], bytes]:
    """Headers and body of the push, without the per-attempt headers."""
    if mode == "structured":
        # the stored form is the structured form: sent byte for byte
        return mode, {"Content-Type": STRUCTURED_CONTENT_TYPE}, stored
    headers, body = binary_from_stored(attributes)
    return mode, headers, body
