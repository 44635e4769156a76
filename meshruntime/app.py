"""The runtime process: configuration, store, publish API, health and metrics, on one port.

:class:`Runtime` owns everything a running sidecar (or gateway) has; :meth:`Runtime.make_server`
is its HTTP server. ``python -m meshruntime`` (see ``__main__``) builds one from flags
and the environment and runs it until SIGTERM. Tests build one in-process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redis.exceptions import RedisError

from . import eventmesh
from .appender import AppendCoalescer
from .cloudevents import EventError, parse_http
from .config import DEFAULT_MAX_DOCUMENT_BYTES, load_file
from .config_watcher import ConfigWatcher
from .delivery import DeliveryManager, DeliverySettings
from .delivery.process import DeliveryProcess
from .heartbeat import Heartbeater
from .identity import SOFTWARE_VERSION, default_runtime_id
from .journey import JourneyRecorder
from .keys import DEFAULT_PREFIX
from .metrics import CONTENT_TYPE_LATEST, RuntimeMetrics
from .mqtt_ingest import MqttIngestor
from .publish import Limits, Prepared, Publisher, Refusal
from .replies import REPLY_BY_EXTENSION, REPLY_TO_EXTENSION, ReplyWaiter, deadline_text
from .routing_report import RoutingReport
from .server import HttpServer, Request, Response, Result, error_response
from .skywalking import (
    TRACE_MODES,
    DeliveryTracer,
    PublishSpan,
    PublishTracer,
    SegmentReporter,
    reporter_for,
    service_name,
)
from .state import MeshState
from .store import Store, StoreError, StoreUnsupported
from .store.resp import RespPool
from .store.storeset import DEFAULT_CONNECTION, StoreSet, open_stores
from .tap import BUFFER_BYTES, DATA_LIMIT, Tap
from .tracing import Tracing

log = logging.getLogger(__name__)

__all__ = ["Runtime", "Settings"]

JSON = "application/json"


class StoresMissing(RuntimeError):
    """The applied configuration names stores this runtime has no connection for (at start)."""


@dataclass
class Settings:
    """What a runtime is told at start (flags and environment; see ``__main__``)."""

    store_url: str | None = None  # the connection "default" (the one store of a one-store mesh)
    application: str | None = None  # None: gateway mode, any application's key
    # connection name -> URL of the event stores (``--store NAME=URL``); credentials stay here
    stores: dict[str, str] = field(default_factory=dict)
    # MQTT stores to ingest device messages from, each as an application (None: the sidecar's own)
    mqtt_ingest: list[tuple[str, str | None]] = field(default_factory=list)
    host: str = "127.0.0.1"
    port: int = 8700
    config_redis_url: str | None = None
    config_file: Path | None = None
    config_cache: Path | None = None
    # the largest configuration document read (from Redis, the file or the cache); longer ones are
    # refused by their length, unread
    max_config_bytes: int = DEFAULT_MAX_DOCUMENT_BYTES
    prefix: str = DEFAULT_PREFIX
    runtime_id: str = field(default_factory=default_runtime_id)
    limits: Limits = field(default_factory=Limits)
    journey_sample_rate: float = 1.0
    journey_ttl_seconds: int = 86_400
    otlp_endpoint: str | None = None
    # where spans go: "otlp", "skywalking" or "none"; None picks the one whose URL is set
    traces: str | None = None
    skywalking_url: str | None = None  # the OAP's HTTP receiver, e.g. http://oap:12800
    config_poll_interval: float = 3.0
    config_file_poll_interval: float = 2.0
    tap_interval: float = 1.0
    tap_data_limit: int = DATA_LIMIT  # bytes of data a tap copy carries whole
    tap_buffer_bytes: int = BUFFER_BYTES  # bytes of copies waiting for Redis before copies are dropped
    trim_interval: float = 60.0
    heartbeat_interval: float = 10.0
    shutdown_timeout: float = 10.0
    head_timeout: float = 10.0  # seconds a request's line and headers may take to arrive
    max_in_flight_appends: int = 2
    # pending deliveries idle this long are taken over from a runtime presumed dead
    visibility_timeout: float = 30.0
    # deliver from a child process (see meshruntime.delivery.process); the command line's default,
    # not the library's: in-process runtimes (tests) keep the engine at hand
    delivery_process: bool = False
    # where Prometheus scrapes this runtime (heartbeats carry it to the portal's service
    # discovery); None: http://<listen address>/metrics once listening
    metrics_url: str | None = None

    @property
    def gateway(self) -> bool:
        return self.application is None

    @property
    def trace_mode(self) -> str:
        """The ``--traces`` mode, checked against the URLs it needs (ValueError names the flag)."""
        mode = self.traces or ("skywalking" if self.skywalking_url else "otlp" if self.otlp_endpoint else "none")
        if mode not in TRACE_MODES:
            raise ValueError(f"--traces must be one of {', '.join(TRACE_MODES)}, got {mode!r}")
        if mode == "skywalking" and not self.skywalking_url:
            raise ValueError("--traces skywalking needs --skywalking-url (the OAP, e.g. http://oap:12800)")
        if mode == "otlp" and not self.otlp_endpoint:
            raise ValueError("--traces otlp needs --otlp-endpoint")
        return mode

    @property
    def connections(self) -> dict[str, str]:
        """Every store connection: ``stores``, and ``store_url`` as ``default`` unless given there."""
        out = dict(self.stores)
        if self.store_url and DEFAULT_CONNECTION not in out:
            out[DEFAULT_CONNECTION] = self.store_url
        return out

    @property
    def mesh_url(self) -> str:
        """The mesh's Redis: configuration, journeys, heartbeats, tap, leases, replies."""
        url = self.config_redis_url or self.connections.get(DEFAULT_CONNECTION)
        if not url:
            raise ValueError("the runtime needs the mesh's Redis: give --config-redis-url (or a default store "
                             "connection on Redis)")
        return url


def _refused(refusal: Refusal) -> Response:
    return Response.json(refusal.status, refusal.body())


class Runtime:
    """One mesh runtime. ``start()`` connects and loads the configuration; ``stop()`` drains."""

    def __init__(self, settings: Settings, *, store: Store | None = None) -> None:
        self.settings = settings
        self.metrics = RuntimeMetrics()
        self.state: MeshState | None = None
        self.stopping = False
        self.config_error: str | None = None
        mode = settings.trace_mode
        self.tracing = Tracing(otlp_endpoint=settings.otlp_endpoint if mode == "otlp" else None,
                               attributes={"meshruntime.id": settings.runtime_id})
        # SkyWalking's native protocol (meshruntime.skywalking): one reporter for the process
        self.segments: SegmentReporter | None = None
        self.sw_publish: PublishTracer | None = None
        delivery_tracer = None
        if mode == "skywalking":
            self.segments = reporter_for(settings.skywalking_url, metric="meshruntime_trace_segments",
                                         registry=self.metrics.registry,
                                         user_agent=f"meshruntime/{SOFTWARE_VERSION}")
            service = service_name(settings.application)
            self.sw_publish = PublishTracer(self.segments, service=service, instance=settings.runtime_id,
                                            store_url=settings.connections.get(DEFAULT_CONNECTION) or settings.mesh_url)
            delivery_tracer = DeliveryTracer(self.segments, service=service, instance=settings.runtime_id)
        # Every topic's store, by the catalog's names; journeys, tap, heartbeats, leases and
        # replies go to the mesh's Redis (the config Redis), which the portal reads.
        self.stores: StoreSet = open_stores(
            settings.connections, mesh_url=settings.mesh_url, prefix=settings.prefix,
            journey_ttl_seconds=settings.journey_ttl_seconds, visibility_timeout_s=settings.visibility_timeout)
        if store is not None:  # one given engine for every topic (tests)
            mesh, self.stores = self.stores.mesh, StoreSet.of(store, journal=self.stores.mesh)
            self.stores.mesh = mesh
        assert self.stores.mesh is not None
        self.mesh_redis = self.stores.mesh.client
        self.store_report: dict[str, dict[str, Any]] = {}  # per catalog store, as the heartbeat says
        self.retention_passes = 0  # passes of the retention loop over the topics written to
        self.tap = Tap(self.mesh_redis, prefix=settings.prefix, runtime_id=settings.runtime_id,
                       topics=lambda: self.state.topics if self.state else (),
                       applications=self._tapped_applications, interval=settings.tap_interval,
                       data_limit=settings.tap_data_limit, max_buffer_bytes=settings.tap_buffer_bytes,
                       resp=RespPool(settings.mesh_url, max_idle=2),
                       on_sent=self.metrics.tap_messages.inc, on_dropped=self.metrics.tap_dropped.inc)
        self.coalescer = AppendCoalescer(
            self.stores, max_in_flight=settings.max_in_flight_appends,
            observe=self._observe_append, on_error=lambda e: self.metrics.count_store_error("append"))
        self.journey = JourneyRecorder(settings.runtime_id, sample_rate=settings.journey_sample_rate)
        # copies that routing rules could not make, for the routing rules' pages (mesh Redis)
        self.routing_report = RoutingReport(self.mesh_redis, settings.prefix)
        self.publisher = Publisher(store=self.stores, coalescer=self.coalescer, metrics=self.metrics,
                                   journey=self.journey, tap=self.tap, limits=settings.limits,
                                   routing_report=self.routing_report)
        delivery_settings = DeliverySettings(visibility_timeout_s=settings.visibility_timeout)
        self.delivery: DeliveryManager | DeliveryProcess
        if settings.delivery_process:
            self.delivery = DeliveryProcess(
                connections=settings.connections, mesh_url=settings.mesh_url, prefix=settings.prefix,
                consumer=settings.runtime_id,
                application=settings.application, settings=delivery_settings,
                journey_sample_rate=settings.journey_sample_rate, journey_ttl_seconds=settings.journey_ttl_seconds,
                user_agent=f"meshruntime/{SOFTWARE_VERSION}", shutdown_timeout=settings.shutdown_timeout,
                skywalking_url=settings.skywalking_url if mode == "skywalking" else None)
        else:
            self.delivery = DeliveryManager(
                self.stores, client=self.mesh_redis, consumer=settings.runtime_id, application=settings.application,
                registry=self.metrics.registry, journey=self.journey, user_agent=f"meshruntime/{SOFTWARE_VERSION}",
                settings=delivery_settings, tracer=delivery_tracer)
        # EventMesh's request-reply (code 101) waits on the mesh's Redis, where replies are posted
        self.replies = ReplyWaiter(self.mesh_redis, settings.prefix)
        self.ingestors: list[MqttIngestor] = []
        for store_name, application in settings.mqtt_ingest:
            application = application or settings.application
            if application is None:
                raise ValueError(f"--mqtt-ingest {store_name}: a gateway ingests as an application it is told "
                                 f"({store_name}=APPLICATION)")
            self.ingestors.append(MqttIngestor(
                store_name=store_name, application=application, publisher=self.publisher,
                session=settings.runtime_id, state=lambda: self.state,
                engine=lambda name=store_name: self._mqtt_engine(name)))
        self.watcher: ConfigWatcher | None = None
        self.heartbeater: Heartbeater | None = None
        self.metrics_url = settings.metrics_url or ""
        self._tasks: list[asyncio.Task] = []
        self._config_file_mtime: float | None = None
        self._config_changed = asyncio.Event()  # set (and replaced) on every applied document
        self._get_routes = {"/healthz": self.handle_healthz, "/readyz": self.handle_readyz,
                            "/metrics": self.handle_metrics, "/v1/info": self.handle_info}

    def _tapped_applications(self) -> tuple[str, ...] | dict[str, str | None]:
        """Whose refusals this runtime may have to tap: a sidecar's own, a gateway's every one."""
        if self.settings.application is not None:
            return (self.settings.application,)
        return self.state.applications if self.state else ()

    def _mqtt_engine(self, store_name: str):
        engine = self.stores.stores.get(store_name)
        return engine if engine is not None and engine.kind == "mqtt" else None

    # -- configuration ---------------------------------------------------------------------------
    def apply_config(self, doc: dict[str, Any]) -> MeshState:
        """Compile a validated document and swap it in; raising refuses it and keeps the old one."""
        return self._swap(doc, MeshState.build(doc, application=self.settings.application))

    async def apply_config_async(self, doc: dict[str, Any]) -> MeshState:
        """:meth:`apply_config` with the compiling (schemas, indexes) off the event loop, so that
        a large document does not stall publishes (the watcher's and the file's ``on_apply``)."""
        state = await asyncio.to_thread(MeshState.build, doc, application=self.settings.application)
        return self._swap(doc, state)

    def _swap(self, doc: dict[str, Any], state: MeshState) -> MeshState:
        # raises (refusing the document) before anything is swapped; subscriptions its access
        # policy does not let subscribe are held (the publish path's evaluator: indexed, cached)
        self.delivery.apply_config(doc, policy=state.policy)
        self.stores.apply_document(doc)  # (the in-process engine reads it later, in the background)
        for name, why in self.stores.missing.items():
            log.error("topics of event store %r refused (503) until this runtime has its connection: %s", name, why)
        self.state = state
        self.config_error = None
        self.metrics.config_version.set(state.version)
        self.tap.poke()
        changed, self._config_changed = self._config_changed, asyncio.Event()
        changed.set()
        log.info("config version %s applied (%d topics, %d access rules)",
                 state.version, len(state.topics), len(state.policy))
        return state

    async def _load_config_file(self) -> None:
        path = self.settings.config_file
        assert path is not None
        mtime = path.stat().st_mtime
        doc = await asyncio.to_thread(load_file, path, max_bytes=self.settings.max_config_bytes)  # and validates
        current = self.state
        if current is None or (doc["version"], doc["checksum"]) != (current.version, current.checksum):
            await self.apply_config_async(doc)
        self._config_file_mtime = mtime

    async def _watch_config_file(self) -> None:
        """Re-read the config file when it changes (standalone mode); a bad file keeps the old config."""
        path = self.settings.config_file
        assert path is not None
        while True:
            await asyncio.sleep(self.settings.config_file_poll_interval)
            try:
                if path.stat().st_mtime != self._config_file_mtime:
                    await self._load_config_file()
            except Exception as error:  # keep serving on the previous document
                self.config_error = f"config file {path} not applied: {error}"
                log.error("%s", self.config_error)
                with contextlib.suppress(OSError):
                    self._config_file_mtime = path.stat().st_mtime

    @property
    def config_version(self) -> int | None:
        return None if self.state is None else self.state.version

    # -- life cycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        settings = self.settings
        if settings.config_file is not None:
            await self._load_config_file()
            self._tasks.append(asyncio.create_task(self._watch_config_file(), name="config-file"))
        if settings.config_redis_url is not None:
            cache = settings.config_cache
            self.watcher = ConfigWatcher(settings.config_redis_url, prefix=settings.prefix, cache_path=cache,
                                         on_apply=self.apply_config_async,
                                         poll_interval=settings.config_poll_interval, freeze=True,
                                         max_document_bytes=settings.max_config_bytes)
            await self.watcher.start()
        if self.state is not None and self.stores.missing_in_use:
            await self.stop()
            raise StoresMissing("; ".join(self.stores.missing_in_use.values()))
        try:
            await self.stores.connect()
        except StoreError as error:  # served as 503 until it answers; readiness says so
            log.error("%s", error)
        self.tap.start()
        if self.segments is not None:
            await self.segments.start()
        for ingestor in self.ingestors:
            ingestor.start()
        await self.delivery.start()  # delivers the subscriptions of whatever config is applied, now or later
        self._tasks.append(asyncio.create_task(self._trim_loop(), name="retention-trim"))
        await self._start_heartbeat()

    async def _start_heartbeat(self) -> None:
        """Beat to the mesh Redis; the runtime itself stands in for the watcher (it knows the applied
        version and checksum whether they came from Redis or from a file)."""
        self.heartbeater = Heartbeater(
            self.settings.mesh_url, prefix=self.settings.prefix,
            runtime_id=self.settings.runtime_id, application=self.settings.application, watcher=self,
            counters=lambda: {**self.metrics.counters(), **self.delivery.counters(), **self._ingest_counters()},
            stores=lambda: self.store_report, interval=self.settings.heartbeat_interval,
            journey_sample_rate=self.settings.journey_sample_rate,
            journey_ttl_seconds=self.settings.journey_ttl_seconds, metrics_url=lambda: self.metrics_url,
            held=lambda: self.delivery.held, max_config_bytes=self.settings.max_config_bytes)
        await self.refresh_store_report()
        self._tasks.append(asyncio.create_task(self._report_stores(), name="store-report"))
        await self.heartbeater.start()

    def _ingest_counters(self) -> dict[str, int]:
        if not self.ingestors:
            return {}
        return {"mqtt_ingested": sum(i.ingested for i in self.ingestors),
                "mqtt_refused": sum(i.refused for i in self.ingestors)}

    async def refresh_store_report(self) -> dict[str, dict[str, Any]]:
        """Ask every store whether it answers; what the next heartbeat reports (see StoreSet.reachability)."""
        report = await self.stores.reachability()
        for name, entry in report.items():
            before = self.store_report.get(name, {}).get("state")
            if before is not None and before != entry["state"]:
                log.warning("event store %r: %s (was %s)", name, entry["state"], before)
        self.store_report = report
        return report

    async def _report_stores(self) -> None:
        while True:
            await asyncio.sleep(self.settings.heartbeat_interval)
            try:
                await self.refresh_store_report()
            except Exception:  # a report is best effort; the next one comes
                log.exception("store reachability not known")

    def listening(self, host: str, port: int) -> None:
        """The server listens on ``host:port``: advertise ``/metrics`` there (unless a metrics URL
        was given) and tell the portal at once, so Prometheus finds the runtime within a beat.

        One URL: ``/metrics`` here serves the delivery child's series too (the child listens on
        loopback only), so a runtime is one scrape target wherever Prometheus runs."""
        if not self.settings.metrics_url:
            if host in ("0.0.0.0", "::", ""):  # noqa: S104 - all interfaces: others reach us by name
                host = socket.getfqdn()
            self.metrics_url = f"http://{f'[{host}]' if ':' in host else host}:{port}/metrics"
        if self.heartbeater is not None:
            self.heartbeater.beat_soon()

    # What the heartbeat reports (the ConfigWatcher's interface).
    @property
    def version(self) -> int | None:
        return self.config_version

    @property
    def checksum(self) -> str | None:
        return None if self.state is None else self.state.checksum

    @property
    def last_error(self) -> str | None:
        return self.config_error or (self.watcher.last_error if self.watcher is not None else None)

    async def wait_for_config(self, version: int | None = None, timeout: float = 10.0) -> MeshState:
        """Wait until a configuration (of at least ``version``) is applied; return its state."""
        async with asyncio.timeout(timeout):
            while self.state is None or (version is not None and self.state.version < version):
                await self._config_changed.wait()
        return self.state

    async def stop(self) -> None:
        """Finish queued appends, stop background work, close connections."""
        self.stopping = True
        for ingestor in self.ingestors:  # what it had not stored is sent again by the broker
            await ingestor.stop()
        if self.replies is not None:
            await self.replies.stop()  # requests still waiting read their reply once more and answer
        await self.coalescer.drain()
        await self.stores.drain()  # journey steps of appends to engines other than the mesh's Redis
        await self.publisher.drain_background()
        await self.routing_report.close()
        # attempts under way finish; events waiting for a retry stay pending for the next runtime
        await self.delivery.stop(timeout=self.settings.shutdown_timeout)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self.heartbeater is not None:
            await self.heartbeater.stop()
        if self.watcher is not None:
            await self.watcher.stop()
        await self.tap.stop()
        await self.stores.close()
        if self.segments is not None:
            await self.segments.stop()
        await asyncio.to_thread(self.tracing.shutdown)  # flushing spans is blocking I/O

    async def _trim_loop(self) -> None:
        """Apply retention to the topics this runtime wrote to.

        Appends trim by length (or by age when a topic has no length limit); a topic with both
        limits gets its age limit applied here.
        """
        while True:
            await asyncio.sleep(self.settings.trim_interval)
            state = self.state
            if state is None:
                continue
            for name in list(self.publisher.touched_topics):
                topic = state.topics.get(name)
                if topic is None or topic.retention.unlimited:
                    continue
                try:
                    await self.stores.store_for(name).trim(name, topic.retention)
                except StoreUnsupported as error:  # the engine applies retention itself, or cannot
                    log.debug("trim of %s: %s", name, error)
                except StoreError as error:
                    self.metrics.count_store_error("trim")
                    log.warning("trim of %s failed: %s", name, error)
            self.retention_passes += 1

    def _observe_append(self, n: int, seconds: float) -> None:
        self.metrics.batch_size.observe(n)
        self.metrics.append_latency.observe(seconds)

    # -- HTTP ------------------------------------------------------------------------------------
    def make_server(self) -> HttpServer:
        """The HTTP server (``await server.start(host, port)``, ``await server.shutdown()``)."""
        return HttpServer(self.dispatch, max_body=self.settings.limits.max_request_bytes,
                          on_too_large=self._body_too_large, head_timeout=self.settings.head_timeout)

    def _body_too_large(self, length: int | None, headers: Mapping[str, str]) -> Response:
        """The answer to a body over the request limit: what the headers already refuse (not
        ready, a bad key) comes first, as it would for a body within the limit."""
        limit = self.settings.limits.max_request_bytes
        size = f"is {length} bytes" if length is not None else "exceeds the limit"
        try:
            state = self._gate()
            if "Authorization" in headers:  # EventMesh requests name their key elsewhere
                self.publisher.authenticate(state, headers["Authorization"])
            raise self.publisher.refuse(Refusal(
                413, "too_large", f"the request body {size}; the limit is {limit} bytes", limit=limit))
        except Refusal as refusal:
            return _refused(refusal)

    def dispatch(self, request: Request) -> Result:
        """Route a request: a :class:`Response`, a future of one, or a coroutine (see ``server``)."""
        path = request.path
        method = request.method
        if method == "POST":
            if path.startswith("/v1/topics/") and path.endswith("/events"):
                topic = path[11:-7]
                if topic and "/" not in topic:
                    return self.handle_publish(request, topic)
            elif path.startswith("/eventmesh/publish/"):
                topic = path[19:]
                if topic and "/" not in topic:
                    return self.handle_eventmesh_publish(request, topic)
            elif path in ("/eventmesh/publish", "/"):
                return self.handle_eventmesh_code(request)
        elif method in ("GET", "HEAD"):
            handler = self._get_routes.get(path)
            if handler is not None:
                return handler(request)
        if path in self._get_routes or path.startswith(("/v1/topics/", "/eventmesh/publish")) or path == "/":
            return error_response(405, "method_not_allowed", f"{method} is not allowed on {path}")
        return error_response(404, "not_found", f"no such path: {path}")

    def _gate(self) -> MeshState:
        """The state to serve this request with, or a refusal while not ready / stopping."""
        if self.stopping:
            raise self.publisher.refuse(Refusal(503, "shutting_down", "this runtime is shutting down"))
        state = self.state
        if state is None:
            raise self.publisher.refuse(Refusal(503, "not_ready", "no configuration applied yet"))
        return state

    def handle_publish(self, request: Request, topic: str) -> Result:
        """``POST /v1/topics/{topic}/events``: CloudEvents in structured, binary or batch mode.

        Every check runs here and now; the answer waits only for the append (a future, no task)."""
        span: PublishSpan | None = None
        try:
            state = self._gate()
            identity = self.publisher.authenticate(state, request.headers.get("Authorization"))
            body = request.body
            try:
                mode, events = parse_http(request.headers, body)
            except EventError as error:
                raise self.publisher.refuse(Refusal(400, "invalid_event", str(error))) from None
            if mode != "batch" and len(body) > self.settings.limits.max_event_bytes:
                limit = self.settings.limits.max_event_bytes
                raise self.publisher.refuse(Refusal(
                    413, "too_large", f"the event is {len(body)} bytes; the limit is {limit}", limit=limit))
            if self.tracing.enabled:
                return self._traced_publish(request, state, identity, topic, events, mode)
            if self.sw_publish is not None:
                span = self.sw_publish.begin(request.headers, f"POST /v1/topics/{topic}/events", topic, events)
                span.stamp(events, identity.application)
            prepared = (self.publisher.prepare(state, identity, topic, events,
                                               trace_id=span.trace_id if span is not None else None),)
        except Refusal as refusal:
            if span is not None:
                span.end(application=identity.application, events=len(events), status=refusal.status,
                         refusal=refusal.reason)
            return _refused(refusal)
        answer = asyncio.get_running_loop().create_future()
        self.publisher.submit(prepared).add_done_callback(
            lambda appended: answer.set_result(self._published(prepared, appended, span)))
        return answer

    def _published(self, prepared: tuple[Prepared], appended: asyncio.Future,
                   span: PublishSpan | None = None) -> Response:
        try:
            self.publisher.finish(prepared, appended)
        except Refusal as refusal:
            if span is not None:
                span.end(application=prepared[0].identity.application, events=len(prepared[0].events),
                         status=refusal.status, refusal=refusal.reason)
            return _refused(refusal)
        if span is not None:
            done = prepared[0]
            span.end(application=done.identity.application, events=len(done.events), status=202, stored=True)
        return self._accepted(prepared[0])

    @staticmethod
    def _accepted(done: Prepared) -> Response:
        body: dict[str, Any] = {"topic": done.topic.name, "accepted": len(done.events),
                                "ids": [e.attributes["id"] for e in done.events]}
        if done.routed:
            body["routed"] = done.routed
        if done.warnings:
            body["warnings"] = done.warnings
        return Response.json(202, body)

    async def _traced_publish(self, request, state, identity, topic, events, mode) -> Response:
        from opentelemetry.trace import SpanKind, Status, StatusCode

        context = self.tracing.parent_context(request.headers)
        with self.tracing.tracer.start_as_current_span(
            f"publish {topic}", context=context, kind=SpanKind.SERVER,
            attributes={"messaging.system": "meshadmin", "messaging.destination.name": topic,
                        "messaging.operation": "publish", "messaging.batch.message_count": len(events),
                        "meshadmin.application": identity.application, "cloudevents.mode": mode},
        ) as span:
            traceparent = self.tracing.traceparent(span)
            for event in events:
                event.attributes.setdefault("traceparent", traceparent)
            try:
                prepared = await self.publisher.publish(state, identity, topic, events)
            except Refusal as refusal:
                span.set_status(Status(StatusCode.ERROR, refusal.message))
                span.set_attribute("meshadmin.refusal", refusal.reason)
                return _refused(refusal)
        return self._accepted(prepared)

    # -- EventMesh compatibility -----------------------------------------------------------------
    def _eventmesh_reply(self, ret_code: int, message: str) -> Response:
        return Response(200, eventmesh.reply(ret_code, message))

    def _eventmesh_refusal(self, refusal: Refusal) -> Response:
        return self._eventmesh_reply(eventmesh.ret_code_for(refusal.reason), refusal.message)

    async def _eventmesh_publish(self, state: MeshState, identity, items, span: PublishSpan | None = None) -> Response:
        """Check every (topic, event) of an EventMesh request, then append them all at once."""
        limit = self.settings.limits.max_batch_events
        if len(items) > limit:  # a batch spanning topics counts whole, as EventMesh counts it
            raise self.publisher.refuse(Refusal(413, "too_many", f"a request carries at most {limit} events; "
                                                f"this one has {len(items)}"), len(items))
        by_topic: dict[str, list] = {}
        for topic, event in items:
            by_topic.setdefault(topic, []).append(event)
        trace_id = span.trace_id if span is not None else None
        prepared = [self.publisher.prepare(state, identity, topic, events, trace_id=trace_id)
                    for topic, events in by_topic.items()]
        await self.publisher.commit(prepared)
        if span is not None:
            span.stored = True
        return self._eventmesh_reply(eventmesh.RET_OK, "success")

    async def handle_eventmesh_publish(self, request: Request, topic: str) -> Response:
        """``POST /eventmesh/publish/{topic}``: any JSON body, wrapped as a CloudEvent."""

        def items(body: bytes, form: None):
            event = eventmesh.parse_path_publish(topic, request.headers, body, request.remote)
            return [(event.attributes["subject"], event)]

        return await self._eventmesh(request, items)

    async def handle_eventmesh_code(self, request: Request) -> Response:
        """The request-code form: a ``code`` header (101, 102, 104, 107) and form (or JSON) fields."""

        def items(body: bytes, form: dict):
            parsed = eventmesh.parse_code_request(request.headers, form)
            return parsed if parsed.code == eventmesh.CODE_SEND_SYNC else parsed.items

        return await self._eventmesh(request, items, form_fields=True)

    async def _eventmesh_request_reply(self, state: MeshState, identity, request: eventmesh.CodeRequest,
                                       span: PublishSpan | None = None) -> Response:
        """Code 101: publish, wait for the topic's responder to answer, answer with its reply
        (see :mod:`meshruntime.replies`)."""
        [(topic, event)] = request.items
        topic_state = state.topics.get(topic)
        if topic_state is None:  # refused as for any code (unknown topic)
            return await self._eventmesh_publish(state, identity, request.items, span)
        # checked before storing: nothing would answer
        why = ("none of its subscriptions is its responder" if topic_state.responder is None
               else f"its responder {topic_state.responder} is paused" if not topic_state.responder_active
               else None)
        if why is not None:
            return self._eventmesh_reply(eventmesh.RET_SEND_SYNC_MSG_ERR,
                                         f"no request-reply on topic {topic!r}: {why}; nothing was stored")
        wait_s = min(request.reply_wait_ms, self.settings.limits.max_reply_wait_ms) / 1000
        try:
            await self.replies.start()
        except (RedisError, OSError, TimeoutError) as error:
            return self._eventmesh_reply(eventmesh.RET_SEND_SYNC_MSG_ERR,
                                         f"cannot wait for replies ({error}); nothing was stored")
        token = self.replies.expect()
        event.attributes[REPLY_TO_EXTENSION] = token
        event.attributes[REPLY_BY_EXTENSION] = deadline_text(time.time() + wait_s)
        try:
            await self._eventmesh_publish(state, identity, request.items, span)
        except BaseException:
            self.replies.forget(token)
            raise
        try:
            answer = await self.replies.wait(token, wait_s)
        except (RedisError, OSError) as error:
            return self._eventmesh_reply(eventmesh.RET_WAITING_RR_MSG_ERR,
                                         f"eventMesh waiting rr msg err, the reply could not be read ({error}); "
                                         "the event is stored and will still be delivered")
        return self._eventmesh_reply(*eventmesh.reply_to_request(topic, event, answer, wait_s))

    async def _eventmesh(self, request: Request, items, *, form_fields: bool = False) -> Response:
        """One EventMesh request: authenticate, parse with ``items(body, form)``, publish, and answer
        every refusal with EventMesh's ``retCode``. The key is checked before the body is parsed,
        except in the form requests, which may carry it in a form field."""
        try:
            state = self._gate()
            form = None
            if not form_fields:
                identity = self.publisher.authenticate(state, eventmesh.eventmesh_key(request.headers))
            body = request.body
            if form_fields:
                form = eventmesh.form_fields(request.content_type, body)
                identity = self.publisher.authenticate(state, eventmesh.eventmesh_key(request.headers, form))
            parsed = items(body, form)
            if self.sw_publish is not None:
                return await self._eventmesh_traced(request, state, identity, parsed)
            if isinstance(parsed, eventmesh.CodeRequest):
                return await self._eventmesh_request_reply(state, identity, parsed)
            return await self._eventmesh_publish(state, identity, parsed)
        except Refusal as refusal:
            return self._eventmesh_refusal(refusal)
        except eventmesh.EventMeshError as error:
            self.metrics.count_refusal(error.reason)
            return self._eventmesh_reply(error.ret_code, error.message)

    async def _eventmesh_traced(self, request: Request, state: MeshState, identity, parsed) -> Response:
        """An EventMesh publish as a SkyWalking segment (see :meth:`_eventmesh`; raises as it does)."""
        pairs = parsed.items if isinstance(parsed, eventmesh.CodeRequest) else parsed
        events = [event for _topic, event in pairs]
        topic = pairs[0][0] if pairs else ""
        code = request.headers.get("code")
        endpoint = f"POST /eventmesh/publish/{topic}" if code is None else f"POST {request.path} (code {code})"
        span = self.sw_publish.begin(request.headers, endpoint, topic, events)
        span.stamp(events, identity.application)
        refusal: Refusal | None = None
        try:
            if isinstance(parsed, eventmesh.CodeRequest):
                answer = await self._eventmesh_request_reply(state, identity, parsed, span)
            else:
                answer = await self._eventmesh_publish(state, identity, parsed, span)
        except Refusal as refused:
            refusal = refused
            raise
        finally:
            failed = refusal.reason if refusal is not None else None
            if failed is None and span.stored is False:
                failed = "not_stored"  # request-reply that found no responder, or stopped early
            span.end(application=identity.application, events=len(events), status=200 if failed is None else (
                refusal.status if refusal is not None else 503), refusal=failed)
        return answer

    # -- health and metrics ----------------------------------------------------------------------
    def handle_healthz(self, request: Request) -> Response:
        return Response.json(200, {"status": "alive", "runtime": self.settings.runtime_id})

    async def handle_readyz(self, request: Request) -> Response:
        store_ok = await self.stores.ping()
        config_ok = self.state is not None
        ready = store_ok and config_ok and not self.stopping
        body = {
            "ready": ready,
            "config_version": self.config_version,
            "config_error": self.last_error,
            "store": "reachable" if store_ok else "unreachable",
            "stores": self.store_report,
            "stopping": self.stopping,
        }
        return Response.json(200 if ready else 503, body)

    async def handle_metrics(self, request: Request) -> Response:
        body = self.metrics.render()
        if isinstance(self.delivery, DeliveryProcess):  # the delivery metrics are the child's
            body += await self.delivery.metrics_text()
        return Response(200, body, CONTENT_TYPE_LATEST)

    def handle_info(self, request: Request) -> Response:
        s = self.settings
        return Response.json(200, {
            "runtime": s.runtime_id, "mode": "gateway" if s.gateway else "sidecar",
            "application": s.application, "config_version": self.config_version,
            "software_version": SOFTWARE_VERSION, "pid": os.getpid(),
            "delivery_pid": self.delivery.pid if isinstance(self.delivery, DeliveryProcess) else os.getpid(),
        })
