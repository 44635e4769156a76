"""The delivery engine of one runtime: a worker per subscription, kept in step with the config.

``apply_config(doc)`` is called with every applied MeshConfig document (it raises only for a
document it cannot use, so that the watcher refuses it). The manager then, in the background:

- starts a worker, and creates the consumer group, for each new subscription of the runtime's
  application (every subscription in gateway mode), paused or active as the document says;
- passes changed settings to running workers (they apply from the next attempt);
- pauses and resumes workers; a paused subscription keeps its group, hence its position;
- holds the workers of subscriptions whose application the access policy does not let
  subscribe to their topic (decided per subscription by the runtime's policy, see
  :func:`~meshruntime.delivery.spec.subscribe_holds`): held like paused, and reported as such
  (status record, ``meshruntime_delivery_held``, the heartbeat), until a document allows them;
- stops the workers of revoked subscriptions (absent from the document) and removes their
  consumer groups and redelivery streams once their attempts under way have finished.

Several runtimes of one application share each subscription's consumer group: the store hands
each event to one of them, and a runtime that dies leaves its events held until a live one takes
them over after the visibility timeout. ``max_in_flight`` bounds each runtime's concurrency per
subscription; with one runtime, 1 delivers in order.

Each subscription is delivered from its topic's store (a :class:`~meshruntime.store.storeset.StoreSet`
says which), through that engine's :class:`~meshruntime.store.GroupConsumer`: the same worker for
every engine. What the delivery engine keeps for itself (ordered-delivery leases, the status the
portal reads, replies to requests) lives in the mesh's Redis, ``client``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from typing import Any

import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry
from redis.exceptions import RedisError

from meshruntime.journey import JourneyRecorder
from meshruntime.keys import KeySpace
from meshruntime.policy import Policy
from meshruntime.replies import ReplyPoster
from meshruntime.store import Store, StoreError
from meshruntime.store.storeset import StoreSet

from .journal import JourneyWriter
from .lock import OrderLock
from .metrics import DeliveryMetrics
from .spec import SubscriptionSpec, group_start, specs_from_config
from .status import StatusReport
from .targets import Targets
from .webhook import WebhookClient
from .worker import AttemptObserver, DeliverySettings, SubscriptionWorker

log = logging.getLogger(__name__)

__all__ = ["DeliveryManager"]


class DeliveryManager:
    def __init__(
        self,
        stores: Store | StoreSet,
        *,
        consumer: str,
        application: str | None,
        registry: CollectorRegistry | None = None,
        journey: JourneyRecorder | None = None,
        settings: DeliverySettings | None = None,
        client: aioredis.Redis | None = None,
        prefix: str | None = None,
        user_agent: str = "meshruntime",
        tracer: AttemptObserver | None = None,
    ) -> None:
        """``stores``: the runtime's stores (the caller applies each document to them), or one
        store for every topic. ``consumer`` names this runtime in every consumer group (its
        runtime id: unique among live runtimes). ``application`` None is gateway mode.
        ``client`` is the mesh's Redis (default: the one store's own client, when it is Redis)."""
        if not isinstance(stores, StoreSet):
            stores = StoreSet.of(stores)
        client = client if client is not None else getattr(stores.engines[0] if stores.engines else None,
                                                           "client", None)
        if client is None:
            raise ValueError("webhook delivery needs the mesh's Redis (a client), for leases and status")
        self.stores = stores
        self.client = client
        self.prefix = prefix if prefix is not None else stores.prefix
        self.keys = KeySpace(self.prefix)
        self.consumer = consumer
        self.application = application
        self.settings = settings or DeliverySettings()
        self.tracer = tracer  # each worker tells it of its attempts (meshruntime.skywalking.DeliveryTracer)
        self.metrics = DeliveryMetrics(registry)
        self.http = Targets(WebhookClient(user_agent=user_agent), stores)  # webhooks and MQTT topics
        self.journal = JourneyWriter(stores, journey, delay=self.settings.flush_delay_s)
        self.replies = ReplyPoster(client, self.prefix)  # responders' answers to requests (EventMesh 101)
        self.workers: dict[str, SubscriptionWorker] = {}
        self.blocked: dict[str, str] = {}  # subscriptions whose topic's store is missing here, and why
        self.held: dict[str, str] = {}  # subscriptions the access policy holds (last document), and why
        self._retiring: dict[str, asyncio.Task] = {}
        self._desired: tuple[dict[str, SubscriptionSpec], str] | None = None
        self._generation = 0  # bumped by apply_config
        self._applied = 0  # the generation the workers reflect
        self._changed = asyncio.Condition()
        self._dirty = asyncio.Event()
        self._reconciler: asyncio.Task | None = None
        self._reporter: asyncio.Task | None = None
        self._closing = asyncio.Event()  # stops the reporter (not cancel(): see worker.py)

    # -- configuration ---------------------------------------------------------------------------
    def apply_config(self, doc: Mapping[str, Any], *, policy: Policy | None = None,
                     holds: Mapping[str, str] | None = None) -> None:
        """Take a validated document; the workers follow in the background (see :meth:`reconciled`).

        ``policy`` is the runtime's compiled access policy of that document (built from the
        document when not given); ``holds`` the held subscriptions when they were decided
        elsewhere (the delivery process gets them from the runtime, see specs_from_config).
        Synchronous and quick, so that it can sit in the runtime's ``on_apply``; raises only when a
        subscription cannot be compiled, so that the document is refused as a whole.
        """
        specs = specs_from_config(doc, self.application, policy=policy, holds=holds)
        self.held = {sub_id: spec.held for sub_id, spec in specs.items() if spec.held is not None}
        self._desired = (specs, group_start(doc, int(time.time() * 1000)))
        self._generation += 1
        self._dirty.set()

    async def reconciled(self, timeout: float | None = 10.0) -> None:
        """Wait until the workers reflect the last document and their consumer groups exist."""
        async with asyncio.timeout(timeout):
            async with self._changed:
                await self._changed.wait_for(lambda: self._applied >= self._generation)
            for worker in list(self.workers.values()):
                await worker.ready.wait()

    # -- life cycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        await self.http.start()
        if self._reconciler is None:
            self._reconciler = asyncio.create_task(self._reconcile_forever(), name="delivery-reconcile")
            self._reporter = asyncio.create_task(self._report_forever(), name="delivery-status")

    async def stop(self, timeout: float = 30.0) -> None:
        """Stop every worker gracefully (attempts under way finish), within ``timeout`` seconds."""
        if self._reconciler is not None:
            self._reconciler.cancel()
            await asyncio.gather(self._reconciler, return_exceptions=True)
            self._reconciler = None
        stops = [asyncio.create_task(w.stop()) for w in self.workers.values()]
        stops.extend(self._retiring.values())
        if stops:
            done, not_done = await asyncio.wait(stops, timeout=timeout)
            for task in not_done:
                task.cancel()
            if not_done:
                log.warning("delivery: %d subscriptions did not stop within %s s", len(not_done), timeout)
                await asyncio.gather(*not_done, return_exceptions=True)
        if self._reporter is not None:
            self._closing.set()
            await asyncio.gather(self._reporter, return_exceptions=True)
            self._reporter = None
        await self.write_status(list(self.workers.values()))
        self.workers.clear()
        await self.journal.drain()
        await self.replies.drain()
        await self.http.close()

    # -- reconciliation --------------------------------------------------------------------------
    async def _reconcile_forever(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            generation = self._generation
            try:
                await self._reconcile()
            except Exception:  # never leave the engine stuck on one bad change
                log.exception("delivery: applying the configuration failed")
            async with self._changed:
                self._applied = generation
                self._changed.notify_all()

    async def _reconcile(self) -> None:
        assert self._desired is not None
        specs, start_id = self._desired
        for sub_id in [s for s in self.workers if s not in specs]:
            log.info("subscription %s revoked: stopping its delivery and removing its group", sub_id)
            self._retire(sub_id, remove=True)
        self.blocked = {}
        for sub_id, spec in specs.items():
            try:
                store = self.stores.store_for(spec.topic)
            except StoreError as error:
                self.blocked[sub_id] = str(error)
                if sub_id in self.workers:  # its store went away: stop, keep the group where it is
                    log.warning("subscription %s: %s; delivery stopped", sub_id, error)
                    self._retire(sub_id, remove=False)
                continue
            worker = self.workers.get(sub_id)
            if worker is not None and (worker.spec.topic != spec.topic or worker.store is not store):
                self._retire(sub_id, remove=worker.spec.topic != spec.topic)
                worker = None
            if worker is not None:
                worker.update(spec)
                continue
            retiring = self._retiring.get(sub_id)
            if retiring is not None:  # revoked and approved again: let the old one finish first
                await asyncio.gather(retiring, return_exceptions=True)
            worker = self._make_worker(spec, store, start_id)
            self.workers[sub_id] = worker
            worker.start()
            log.info("subscription %s: delivering %s to %s (%s)", sub_id, spec.topic, spec.url,
                     "active" if spec.active else "paused")

    def _make_worker(self, spec: SubscriptionSpec, store: Store, start: str | int) -> SubscriptionWorker:
        consumer = store.consumer(spec.topic, spec.id, self.consumer)
        if hasattr(consumer, "redeliver_poll_s"):
            consumer.redeliver_poll_s = self.settings.redeliver_poll_s
        return SubscriptionWorker(
            spec, store=store, consumer=consumer, start=start,
            lock=OrderLock(self.client, self.keys.delivery_lock(spec.id), self.consumer,
                           int(getattr(store, "visibility_timeout_s", self.settings.visibility_timeout_s) * 1000)),
            http=self.http, journal=self.journal, metrics=self.metrics.subscription(spec.id),
            settings=self.settings, replies=self.replies, tracer=self.tracer,
        )

    def _retire(self, sub_id: str, *, remove: bool) -> None:
        worker = self.workers.pop(sub_id)

        async def retire() -> None:
            try:
                await worker.stop(remove=remove)
                if remove:
                    with contextlib.suppress(RedisError, OSError):
                        await self.client.delete(self.keys.delivery(sub_id))
                else:
                    await self.write_status([worker])
            finally:
                self._retiring.pop(sub_id, None)
                if sub_id not in self.workers:
                    self.metrics.forget(sub_id)

        self._retiring[sub_id] = asyncio.create_task(retire(), name=f"delivery-{sub_id}-retire")

    # -- reporting -------------------------------------------------------------------------------
    async def _report_forever(self) -> None:
        while not self._closing.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), self.settings.status_interval_s)
                return
            await self.write_status(list(self.workers.values()))

    async def write_status(self, workers: list[SubscriptionWorker]) -> None:
        """Write the workers' status updates in one round trip (see :mod:`.status`)."""
        taken: list[tuple[SubscriptionWorker, StatusReport]] = []
        pipe = self.client.pipeline(transaction=False)
        for worker in workers:
            if not worker.report.empty():
                report = worker.take_report()
                report.write(pipe, self.keys, worker.spec.id)
                taken.append((worker, report))
        if not taken:
            return
        try:
            await pipe.execute()
        except (RedisError, OSError) as error:
            log.debug("delivery status not written: %s", error)
            for worker, report in taken:  # carried by the next write
                worker.report.merge(report)

    def counters(self) -> dict[str, float]:
        """Totals for the heartbeat."""
        totals = self.metrics.totals()
        totals["subscriptions"] = len(self.workers)
        if self.blocked:
            totals["subscriptions_blocked"] = len(self.blocked)
        held = self.held
        if held:
            totals["subscriptions_held"] = len(held)
        totals["in_flight"] = sum(w.in_flight for w in self.workers.values())
        return totals

    async def wait_idle(self, timeout: float | None = 10.0) -> None:
        """Wait until no worker holds an event (tests)."""
        async with asyncio.timeout(timeout):
            while any(w.held for w in self.workers.values()):
                await asyncio.sleep(0.01)
