"""One subscription's delivery loop: read, filter, push, retry, acknowledge or dead-letter.

A worker drives one :class:`~meshruntime.store.GroupConsumer`, whatever the engine behind it
(Redis Streams, NATS JetStream, Kafka): one code path, the engine's differences kept inside the
consumer (docs/stores.md). It holds at most ``max_in_flight`` events at once (1 delivers strictly
in order, retries included). It takes events, oldest first, from: what it took over (events a
dead runtime held for longer than the visibility timeout, or everything the previous holder of
an ordered subscription held), then the consumer's reads (its own events left unacknowledged by
a restart or a pause, dead letters put back for the subscription, new events).

Pausing or stopping never cuts an HTTP attempt short: the loop stops taking events, attempts
under way finish (within the subscription's timeout), and events waiting for a retry are left
pending in the store, to be picked up when the subscription resumes (or by another runtime). A
subscription the access policy holds (``SubscriptionSpec.held``) stops the same way and reads
nothing until a document lets it resume: its events stay in the store and its lag grows.
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

from meshruntime.cloudevents import STRUCTURED_CONTENT_TYPE, binary_from_stored, is_event_format, reread
from meshruntime.replies import ReplyPoster
from meshruntime.store import GroupConsumer, Held, HeldLost, Store, StoreError, position_key

from .journal import JourneyWriter
from .lock import OrderLock
from .metrics import SubscriptionMetrics
from .retry import Verdict, retry_wait_seconds
from .spec import SubscriptionSpec
from .status import StatusReport
from .webhook import AttemptResult, WebhookClient

log = logging.getLogger(__name__)

__all__ = ["DeliverySettings", "SubscriptionWorker"]

ACKED_MEMORY = 4096


@dataclass(frozen=True, slots=True)
class DeliverySettings:
    """Knobs of the engine (not of a subscription: those come from the MeshConfig document)."""

    # Events held this long without renewal belong to a runtime presumed dead and are taken over.
    # It is the store's (a Redis idle time, NATS AckWait, a Kafka session timeout, set when the
    # store is opened); this one serves a store that has none. Live runtimes renew what they hold
    # every third of it, so only a dead (or frozen) one loses them.
    visibility_timeout_s: float = 30.0
    block_ms: int = 1000  # a read waits this long for new events (and a pause/stop waits for a read)
    redeliver_poll_s: float = 1.0  # how often a busy worker looks at dead letters put back
    claim_batch: int = 100
    backlog_limit: int = 1000  # acquired entries kept in memory before taking more
    metrics_interval_s: float = 5.0  # lag and pending gauges
    status_interval_s: float = 2.0  # the status record the portal reads (see .status)
    # Acknowledgements and journey steps wait this long to share a round trip with others: at
    # 1,000 events/s that is ten per write instead of one. They are off the latency path (the
    # subscriber has its answer), and a crash inside the window only means a redelivery.
    flush_delay_s: float = 0.01
    ack_retries: int = 20  # failed writes of acks retried (0.1 s, doubling up to 2 s) before giving up


@dataclass(slots=True)
class Delivery:
    held: Held
    attempts: int  # attempts already made (or under way when a runtime died)
    recorded: int  # the attempt count the store has for this entry (its delivery count)
    key: tuple[str, str] = field(init=False)

    def __post_init__(self) -> None:
        self.key = self.held.key

    @property
    def entry(self):
        return self.held.entry


def _delivery(held: Held) -> Delivery:
    return Delivery(held, held.attempts, held.attempts + 1)


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


def _ordered_key(d: Delivery) -> tuple:
    return d.held.source != "topic", position_key(d.entry.id)

class AttemptObserver(Protocol):
    """Told of every attempt (tracing): ``start`` may add headers and returns what ``end`` gets."""

    def start(self, spec: SubscriptionSpec, attributes: dict, attempt: int, headers: dict[str, str]) -> Any: ...

    def end(self, started: Any, result: AttemptResult) -> None: ...



class SubscriptionWorker:
    def __init__(
        self,
        spec: SubscriptionSpec,
        *,
        store: Store,
        consumer: GroupConsumer,
        start: str | int,
        lock: OrderLock,
        http: WebhookClient,
        journal: JourneyWriter,
        metrics: SubscriptionMetrics,
        settings: DeliverySettings,
        replies: ReplyPoster | None = None,
        tracer: AttemptObserver | None = None,
    ) -> None:
        self.spec = spec
        self.store = store  # the subscription's topic lives there: its group is made and removed there
        self.consumer = consumer
        self.start_id = start
        # taken only while the subscription is ordered (max in flight 1), on engines whose members
        # do not take turns by themselves (GroupConsumer.orders_itself)
        self.lock = lock
        self._uses_lock = not consumer.orders_itself
        self.lease_interval_s = max(0.05, getattr(store, "visibility_timeout_s", settings.visibility_timeout_s) / 3)
        self.http = http
        self.journal = journal
        self.metrics = metrics
        self.settings = settings
        self.replies = replies
        self.tracer = tracer  # told of each attempt's start and end (meshruntime.skywalking)
        self.ready = asyncio.Event()  # the consumer group exists
        self.report = StatusReport()  # taken and written by the manager every few seconds
        self._held: dict[tuple[str, str], Delivery] = {}
        self._backlog: deque[Delivery] = deque()  # acquired (recovered, claimed): first in line
        self._ahead: deque[Delivery] = deque()  # new events read ahead of free slots (see _take_new)
        self._drained = False  # the last read of the topic got fewer events than it asked for
        self._refilling = False
        self._acks: list[Held] = []
        self._acking: set[tuple[str, str]] = set()
        # acknowledged lately (keys only, the last ACKED_MEMORY to twice that, oldest first): an
        # event read again after its ack landed (a page of own pending events read just before,
        # a server redelivering what it had not applied yet) is acknowledged again, not delivered
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
        self._claim_everything = False  # set when this runtime takes an ordered subscription's lease
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
        if not self.spec.delivering:
            self._halt.set()
        self._report_hold(self.spec)
        if self.spec.held is not None:
            log.warning("subscription %s held: %s; its events wait in the store", self.spec.id, self.spec.held)
        name = self.spec.id
        self._runner = asyncio.create_task(self._run(), name=f"delivery-{name}")
        self._maintainer = asyncio.create_task(self._maintain(), name=f"delivery-{name}-leases")

    def update(self, spec: SubscriptionSpec) -> None:
        """Apply a changed subscription: the next attempt uses its URL, secret, mode and limits."""
        before, self.spec = self.spec, spec
        if spec.held != before.held:
            self._report_hold(spec)
            if spec.held is not None:
                log.warning("subscription %s held: %s; its events wait in the store", spec.id, spec.held)
            else:
                log.info("subscription %s no longer held by the access policy", spec.id)
        if before.delivering and not spec.delivering:
            log.info("subscription %s %s: finishing %d attempts under way", spec.id,
                     "paused" if not spec.active else "held", self._in_flight)
            self._halt.set()
        elif spec.delivering and not before.delivering:
            log.info("subscription %s resumed", spec.id)
            self._halt.clear()
        self._wake.set()

    def _report_hold(self, spec: SubscriptionSpec) -> None:
        self.report.hold(spec.held)
        self.metrics.held.set(0 if spec.held is None else 1)

    async def stop(self, *, remove: bool = False) -> None:
        """Stop gracefully: no new events, attempts under way finish, what was taken and not
        started is given back, then (``remove``) the subscription's group and its put-back dead
        letters are deleted (it was revoked)."""
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
        waiting = [d.held for d in self._held.values()]
        self._held.clear()
        self._ahead.clear()
        self._backlog.clear()
        if waiting:  # read ahead or taken over, never started: the next holder has them at once
            await self._release(waiting)
        with contextlib.suppress(StoreError):
            await self.consumer.close()
        await self.lock.release()
        if remove:
            for attempt in range(3):
                try:
                    await self.store.remove_group(self.spec.topic, self.spec.id)
                    break
                except StoreError as error:
                    log.warning("removing the group of revoked subscription %s failed (%s)%s", self.spec.id,
                                error, "; retrying" if attempt < 2 else "")
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
            if not spec.delivering:  # paused, or held by the access policy: read nothing
                await self._wake.wait()
                continue
            free = spec.max_in_flight - self._in_flight
            if free <= 0 and not self._ahead_low(spec):
                await self._wake.wait()
                continue
            try:
                if spec.max_in_flight == 1 and self._uses_lock and not self.lock.held:
                    if not await self.lock.refresh():
                        # another runtime delivers this ordered subscription: stand by, try later
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(self._wake.wait(), self.lease_interval_s)
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
        """Start up to ``free`` deliveries: what was taken over first, else what the consumer reads."""
        if self._claim_everything:
            self._acquire(await self.consumer.take_over(self.settings.claim_batch))
            self._claim_everything = False
        if self._backlog:
            backlog, limit = self._backlog, self.spec.max_in_flight
            self._refilling = True  # see _start_in_free_slots
            try:
                while backlog and self._in_flight < limit:
                    self._start(backlog.popleft())
            finally:
                self._refilling = False
            return
        await self._take_new(free)

    async def _take_new(self, free: int) -> None:
        """Start up to ``free`` events the consumer reads, first those read ahead.

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
        read = await self.consumer.read(want, block)
        self._drained = len(read) < want  # caught up: read ahead again once a read fills up
        if not read:
            return
        if self._halt.is_set():
            # paused (or stopping) while the read waited: given back, taken up first on resume
            # (or by another runtime after the visibility timeout)
            await self._release(read)
            return
        self._start_in_free_slots(self._fresh(read))

    def _fresh(self, read: list[Held]) -> list[Delivery]:
        """What a read brought that is not held here already (see ``_acked``)."""
        held, acking, acked = self._held, self._acking, self._acked
        out = []
        for h in read:
            key = h.key
            if key in held or key in acking:
                continue
            if key in acked:
                self._acks.append(h)
                self._flush_soon()
                continue
            out.append(_delivery(h))
        return out

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
            while (ahead and self._in_flight < spec.max_in_flight and spec.delivering and not self._backlog
                   and not self._halt.is_set() and not self._stopping):
                self._start(ahead.popleft())
        finally:
            self._refilling = False

    async def _release(self, held: list[Held]) -> None:
        """Give events back without a verdict (a pause, a stop); if that fails they come back
        anyway, after the visibility timeout."""
        try:
            await self.consumer.release(held)
        except StoreError as error:
            log.debug("subscription %s: release failed: %s", self.spec.id, error)

    async def _setup(self) -> None:
        """Create the consumer group (and its source of put-back dead letters), retrying while
        the store is away."""
        while not self._stopping:
            try:
                await self.store.ensure_group(self.spec.topic, self.spec.id, self.start_id)
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

    def _acquire(self, taken: list[Held]) -> None:
        """Put events taken over (claim_stale, take_over) first in line."""
        for delivery in self._fresh(taken):
            self._held[delivery.key] = delivery
            self._backlog.append(delivery)
        if self.spec.max_in_flight == 1 and len(self._backlog) > 1:  # ordered: oldest first
            self._backlog = deque(sorted(self._backlog, key=_ordered_key))

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
        if d.held.missing:
            return _DeadLetter(None, "expired: the event was removed by the topic's retention before it could "
                                     "be delivered")
        try:
            try:
                attributes = orjson.loads(d.entry.event)
            except orjson.JSONDecodeError as error:  # a number beyond a double's range is no error
                attributes = reread(d.entry.event, error)
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
                        await self.consumer.renew([d.held], attempts=n)
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
                await self._release([d.held])  # paused or stopping: its attempts are recorded
                return
            result = None

    @staticmethod
    def _headers(spec: SubscriptionSpec, d: Delivery, request: tuple[str, dict[str, str], bytes],
                 n: int) -> dict[str, str]:
        headers = request[1].copy()
        headers["Mesh-Subscription"] = spec.id
        headers["Mesh-Delivery-Attempt"] = str(n)
        headers["Mesh-Delivery-Id"] = f"{spec.id}/{d.held.source}/{d.entry.id}"
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
        entry = d.held.entry
        if d.held.source == "topic" and entry.time_ms is not None:
            self.metrics.latency.observe(max(0.0, time.time() - entry.time_ms / 1000))
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
        """Move the event to the subscription's dead letters (and ack it); retried while the
        store is away, unless the worker is halted, in which case the event is given back."""
        delay = 0.1
        while True:
            try:
                await self.consumer.dead_letter(d.held, reason, status, d.attempts)
                break
            except HeldLost:
                break  # its new holder delivers it again; the dead letter was written
            except StoreError as error:
                log.warning("subscription %s: dead-lettering %s failed: %s", self.spec.id, d.entry.id, error)
                if await self._halted_within(delay):
                    await self._release([d.held])
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
        self._acks.append(d.held)
        self._acking.add(d.key)
        self._flush_soon()

    def _flush_soon(self) -> None:
        if self._ack_task is None or self._ack_task.done():
            self._ack_task = asyncio.create_task(self._flush_acks())

    async def _flush_acks(self) -> None:
        """Write what has gathered every ``flush_delay_s`` until nothing is left to write."""
        failures = 0
        while self._acks:
            if not self._stopping:
                await asyncio.sleep(self.settings.flush_delay_s)
            batch, self._acks = self._acks, []
            keys = [h.key for h in batch]
            try:
                await self.consumer.ack(batch)
            except HeldLost as lost:
                # no longer this member's: the new holder delivers them again (at least once);
                # not a failure to retry. The others in the batch were acknowledged.
                log.info("subscription %s: %d acks not needed here any more (%s)", self.spec.id,
                         len(lost.ids), lost)
            except StoreError as error:
                failures += 1
                if failures > self.settings.ack_retries:
                    # left unacknowledged: taken over after the visibility timeout, by this
                    # runtime too, so they must not count as acknowledged here (see _fresh)
                    log.warning("subscription %s: %d acks lost (%s); those events will be "
                                "delivered again", self.spec.id, len(batch), error)
                    self._acking.difference_update(keys)
                else:
                    self._acks.extend(batch)
                    await asyncio.sleep(min(0.05 * 2 ** failures, 2.0))
                continue
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
        (while delivering) take over entries that a dead runtime left pending; now and then, gauges."""
        settings = self.settings
        next_gauges = 0.0
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopped.wait(), self.lease_interval_s)
                return
            try:
                await self._renew_leases()
                if self.lock.held and not await self.lock.refresh():
                    # another runtime has it now: take nothing more, and let go of retry waits
                    log.warning("subscription %s: lost the ordered-delivery lease", self.spec.id)
                    self._halt.set()
                if self.spec.delivering and not self._stopping and (self.spec.max_in_flight > 1 or self.lock.held
                                                                 or not self._uses_lock):
                    await self._claim_stale()
                if time.monotonic() >= next_gauges:
                    next_gauges = time.monotonic() + settings.metrics_interval_s
                    await self._update_gauges()
            except StoreError as error:
                log.debug("subscription %s: maintenance failed: %s", self.spec.id, error)

    async def _renew_leases(self) -> None:
        held = [d.held for d in list(self._held.values())]
        for start in range(0, len(held), 500):
            await self.consumer.renew(held[start:start + 500])

    async def _claim_stale(self) -> None:
        batch = self.settings.claim_batch
        more = True
        while more and len(self._backlog) < self.settings.backlog_limit and not self._stopping:
            taken = await self.consumer.claim_stale(batch)
            more = len(taken) >= batch
            if taken:
                log.info("subscription %s: took over %d events left unacknowledged by a stopped runtime",
                         self.spec.id, len(taken))
                self._acquire(taken)
                self._wake.set()

    async def _update_gauges(self) -> None:
        info = await self.store.group_info(self.spec.topic, self.spec.id)
        if info is None:
            return
        # where only the members know what they hold (Kafka), this runtime counts its own
        self.metrics.pending.set(info.pending if info.pending is not None else len(self._held))
        if info.lag is not None:
            self.metrics.lag.set(info.lag)


def _request(mode: str, stored: bytes, attributes: dict) -> tuple[str, dict[str, str], bytes]:
    """Headers and body of the push, without the per-attempt headers; ``mode`` is the subscription's.

    The stored form is the structured form: sent byte for byte. So is, to a binary subscription, an
    event whose ``datacontenttype`` is a CloudEvents format (what Apache EventMesh's Java SDK puts on
    every event): as the ``Content-Type`` of a binary push it would tell the receiver that the body
    is a whole event (HTTP binding 3.1), which the data is not.
    """
    if mode == "structured" or is_event_format(attributes.get("datacontenttype")):
        return mode, {"Content-Type": STRUCTURED_CONTENT_TYPE}, stored
    headers, body = binary_from_stored(stored, attributes)
    return mode, headers, body
