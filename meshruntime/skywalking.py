"""Spans in SkyWalking's native trace protocol: one segment per publish and per delivery attempt.

``--traces skywalking --skywalking-url http://oap:12800`` (see ``__main__``) makes the runtime
report what it does to a SkyWalking OAP, as a SkyWalking agent would:

- a publish (CloudEvents or EventMesh HTTP) is a segment of the application's service, run by
  this runtime (the service instance): an entry span for the request (joined to the caller's
  trace when it sent ``sw8``, else to its W3C ``traceparent``) and, once the store took the
  events, an exit span for the append. Each stored event carries the ``sw8`` extension naming
  that exit span, the way SkyWalking's agents carry context through Kafka or RocketMQ messages;
- each delivery attempt is a segment of the delivery child: an entry span that continues the
  event's ``sw8`` (a ``CrossProcess`` reference to the publish) and an exit span for the webhook
  call, whose context goes to the subscriber in the ``sw8`` header beside ``traceparent``, so a
  subscriber with a SkyWalking agent joins the trace.

Segments are queued and sent in batches (``POST <url>/v3/segments``, a JSON array of
``SegmentObject``) by one background task with the runtime's HTTP client; the publish and the
delivery paths only append to the queue. The queue is bounded: when the collector is down or slow,
segments are dropped and counted (``meshruntime_trace_segments_total{outcome}``), never waited for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily

from .cloudevents import CloudEvent
from .delivery.http1 import Http1Client, HttpError, InvalidUrl
from .sw8 import ContextError, SegmentTemplate, SpanTemplate, Sw8, b64, new_id, references, trace_id_for

log = logging.getLogger(__name__)

__all__ = ["TRACE_MODES", "DeliveryTracer", "PublishSpan", "PublishTracer", "SegmentReporter", "address_of"]

TRACE_MODES = ("none", "otlp", "skywalking")
#: The stored event's extension that carries the publish's context to the delivery side.
EXTENSION = "sw8"
GATEWAY_SERVICE = "mesh-gateway"


def address_of(url: str) -> str:
    """``host:port`` of a URL, without credentials, path or query (which may hold secrets)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return ""
    host = parts.hostname or ""
    if port is None:
        port = {"http": 80, "https": 443, "redis": 6379, "rediss": 6379, "nats": 4222, "mqtt": 1883,
                "kafka": 9092}.get(parts.scheme)
    return f"{host}:{port}" if host and port else host


class SegmentCounts:
    """``<name>_total{outcome}``: segments sent, and dropped because the queue was full or the
    collector did not take them. Plain ints, read when Prometheus scrapes."""

    def __init__(self, name: str, registry: CollectorRegistry | None) -> None:
        self.name = name
        self.values: dict[str, int] = {"sent": 0, "dropped_queue_full": 0, "dropped_collector": 0}
        if registry is not None:
            registry.register(self)

    def add(self, outcome: str, n: int = 1) -> None:
        self.values[outcome] += n

    def collect(self):
        family = CounterMetricFamily(self.name, "SkyWalking trace segments by outcome", labels=["outcome"])
        for outcome, value in self.values.items():
            family.add_metric([outcome], value)
        yield family

    def describe(self):
        yield CounterMetricFamily(self.name, "SkyWalking trace segments by outcome", labels=["outcome"])


class SegmentReporter:
    """A bounded queue of segments and the task that sends it to the collector in batches.

    :meth:`report` never blocks and never fails: it appends, or counts a drop when the queue is
    full. The sender takes up to ``batch_size`` segments at a time; a batch the collector does
    not take (unreachable, timeout, non-2xx) is dropped and counted, and the sender waits a
    little longer before the next try (up to ``max_backoff_s``), so a collector that is down
    costs one failed request per wait, not one per segment.
    """

    def __init__(self, collector_url: str, *, counts: SegmentCounts, user_agent: str = "meshruntime",
                 max_queue: int = 10_000, batch_size: int = 500, interval_s: float = 1.0,
                 timeout_s: float = 5.0, max_backoff_s: float = 30.0) -> None:
        base = collector_url.rstrip("/")
        if not base.startswith(("http://", "https://")):
            raise ValueError(f"the SkyWalking URL must be http(s)://host:port of the OAP, got {collector_url!r}")
        self.url = base if base.endswith("/v3/segments") else f"{base}/v3/segments"
        self.counts = counts
        self.max_queue = max_queue
        self.batch_size = batch_size
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.max_backoff_s = max_backoff_s
        self._queue: deque[bytes] = deque()  # each a SegmentObject's JSON
        self._http = Http1Client(user_agent=user_agent)
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task | None = None
        self._backoff = 0.0
        self._next_log = 0.0

    @property
    def queued(self) -> int:
        return len(self._queue)

    def report(self, item: bytes) -> None:
        queue = self._queue
        if len(queue) >= self.max_queue:
            self.counts.values["dropped_queue_full"] += 1
            return
        queue.append(item)
        if len(queue) == self.batch_size:
            self._wake.set()

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="skywalking-reporter")

    async def stop(self, timeout_s: float = 5.0) -> None:
        """Send what is queued (one try, within ``timeout_s``), then close."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            try:
                async with asyncio.timeout(timeout_s):
                    await asyncio.gather(self._task, return_exceptions=True)
            except TimeoutError:
                self._task.cancel()
                await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        dropped = len(self._queue)
        if dropped:
            self.counts.add("dropped_collector", dropped)
            self._queue.clear()
        await self._http.close()

    async def _run(self) -> None:
        while True:
            wait = self.interval_s + self._backoff
            if not self._stopping:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait)
            self._wake.clear()
            while self._queue:
                if not await self._send_batch() and not self._stopping:
                    break  # the collector is away: wait (longer) before the next try
            if self._stopping:
                return

    async def _send_batch(self) -> bool:
        queue, n = self._queue, min(self.batch_size, len(self._queue))
        batch = [queue.popleft() for _ in range(n)]
        try:
            response = await self._http.post(self.url, {"Content-Type": "application/json"},
                                             b"[" + b",".join(batch) + b"]", self.timeout_s)
            problem = None if 200 <= response.status < 300 else (
                f"HTTP {response.status}: {response.body[:200].decode('utf-8', 'replace')}")
        except (HttpError, InvalidUrl, TimeoutError, OSError) as error:
            problem = str(error) or type(error).__name__
        if problem is None:
            self.counts.add("sent", n)
            self._backoff = 0.0
            return True
        self.counts.add("dropped_collector", n)
        self._backoff = min(self.max_backoff_s, max(1.0, self._backoff * 2))
        now = time.monotonic()
        if now >= self._next_log:
            self._next_log = now + 60.0
            log.warning("SkyWalking collector %s did not take %d segments (%s); dropping them, next try in "
                        "%.0f s", self.url, n, problem, self.interval_s + self._backoff)
        return False


# -- the publish side ------------------------------------------------------------------------------

class _PublishTemplates:
    """What is the same in every publish segment of one endpoint, topic and application."""

    __slots__ = ("append", "entry", "tail")

    def __init__(self, tracer: PublishTracer, endpoint: str, topic: str, application: str) -> None:
        peer = tracer.store_peer
        self.entry = SpanTemplate(0, -1, endpoint, "Entry", "Http",
                                  tags={"http.method": "POST", "mq.topic": topic, "mesh.application": application})
        self.append = SpanTemplate(1, 0, f"Mesh/{topic}/Produce", "Exit", "MQ", peer=peer,
                                   tags={"mq.topic": topic, "mq.broker": peer})
        # the part of the events' sw8 after the ids: this process, its endpoint, the store's address
        self.tail = f"-1-{b64(tracer.service)}-{b64(tracer.instance)}-{b64(endpoint)}-{b64(peer)}"


class PublishSpan:
    """One publish request's segment, from its start to :meth:`end`."""

    __slots__ = ("_tracer", "endpoint", "ref", "segment_id", "start_ms", "stored", "sw8", "sw8_error", "topic",
                 "trace_id", "traceparent")

    def __init__(self, tracer: PublishTracer, endpoint: str, topic: str, trace_id: str,
                 ref: Sw8 | None, sw8_error: str | None, w3c: str | None) -> None:
        self._tracer = tracer
        self.endpoint = endpoint
        self.topic = topic
        self.trace_id = trace_id
        self.ref = ref
        self.sw8_error = sw8_error
        self.stored = False  # set once the store took the events
        self.segment_id = segment_id = new_id()
        self.start_ms = int(time.time() * 1000)
        self.sw8: str | None = None  # what the stored events carry (see stamp)
        self.traceparent = f"00-{w3c or new_id()}-{segment_id[:16]}-01"

    def stamp(self, events: Iterable[CloudEvent], application: str) -> None:
        """Give every event this publish's context: ``sw8`` naming the append (replacing one the
        producer set), and a ``traceparent`` unless the producer set one."""
        tail = self._tracer.templates(self.endpoint, self.topic, application).tail
        value = self.sw8 = f"1-{b64(self.trace_id)}-{b64(self.segment_id)}{tail}"
        traceparent = self.traceparent
        for event in events:
            attributes = event.attributes
            attributes[EXTENSION] = value
            if "traceparent" not in attributes:
                attributes["traceparent"] = traceparent

    def end(self, *, application: str, events: int, status: int, refusal: str | None = None,
            stored: bool = False) -> None:
        """Report the segment: the entry span and, when the events reached the store (``stored``,
        or a store refusal), the append's exit span."""
        tracer = self._tracer
        templates = tracer.templates(self.endpoint, self.topic, application)
        now = int(time.time() * 1000)
        stored = stored or self.stored
        tags: dict[str, Any] = {"http.status_code": status}
        if events != 1:
            tags["mesh.events"] = events
        if refusal is not None:
            tags["mesh.refusal"] = refusal
        if self.sw8_error is not None:
            tags["mesh.sw8_error"] = self.sw8_error
        spans = [templates.entry.render(self.start_ms, now, status >= 400 or refusal is not None, tags,
                                        references(self.ref) if self.ref is not None else b"")]
        if stored or refusal == "store_unavailable":
            spans.append(templates.append.render(self.start_ms, now, not stored))
        tracer.reporter.report(tracer.segment.render(self.trace_id, self.segment_id, spans))


class PublishTracer:
    """Starts a :class:`PublishSpan` per publish request (service: the application, or the gateway)."""

    def __init__(self, reporter: SegmentReporter, *, service: str, instance: str, store_url: str) -> None:
        self.reporter = reporter
        self.service = service
        self.instance = instance
        self.store_peer = address_of(store_url)
        self.segment = SegmentTemplate(service, instance)
        self._templates: dict[tuple[str, str, str], _PublishTemplates] = {}

    def templates(self, endpoint: str, topic: str, application: str) -> _PublishTemplates:
        key = (endpoint, topic, application)
        found = self._templates.get(key)
        if found is None:
            if len(self._templates) >= 10_000:
                self._templates.clear()
            found = self._templates[key] = _PublishTemplates(self, endpoint, topic, application)
        return found

    def begin(self, headers: Mapping[str, str], endpoint: str, topic: str,
              events: list[CloudEvent]) -> PublishSpan:
        """The publish's segment. Its trace: the caller's ``sw8`` if it sent a valid one, else its
        ``traceparent`` header's trace id, else (one event) the event's ``traceparent``, else a new one."""
        ref = error = trace_id = None
        incoming = headers.get("sw8")
        if incoming:
            try:
                ref = Sw8.decode(incoming)
            except ContextError as problem:
                error = str(problem)  # a tracing header never refuses a publish: a new trace, tagged
            else:
                trace_id = ref.trace_id
        w3c = trace_id_for(headers.get("traceparent"))
        if w3c is None and len(events) == 1:
            w3c = trace_id_for(events[0].attributes.get("traceparent"))
        if trace_id is None:
            trace_id = w3c = w3c or new_id()
        elif trace_id_for(f"00-{trace_id}-") is not None:
            w3c = trace_id  # the caller's SkyWalking id is a W3C one too: one id for both headers
        return PublishSpan(self, endpoint, topic, trace_id, ref, error, w3c)


# -- the delivery side -----------------------------------------------------------------------------

class _DeliveryTemplates:
    __slots__ = ("consume", "push", "tail")

    def __init__(self, tracer: DeliveryTracer, spec: Any, peer: str) -> None:
        endpoint = f"Mesh/{spec.topic}/Deliver/{spec.id}"
        common = {"mq.topic": spec.topic, "mesh.subscription": spec.id}
        self.consume = SpanTemplate(0, -1, endpoint, "Entry", "MQ", tags=common)
        self.push = SpanTemplate(1, 0, f"Webhook/{spec.id}", "Exit", "Http", peer=peer,
                                 tags={**common, "http.method": "POST"})
        self.tail = f"-1-{b64(tracer.service)}-{b64(tracer.instance)}-{b64(endpoint)}-{b64(peer)}"


class Attempt:
    __slots__ = ("context", "number", "segment_id", "start_ms", "sw8_error", "templates", "trace_id")

    def __init__(self, templates: _DeliveryTemplates, number: int, trace_id: str, context: Sw8 | None,
                 sw8_error: str | None) -> None:
        self.templates = templates
        self.number = number
        self.trace_id = trace_id
        self.context = context
        self.sw8_error = sw8_error
        self.segment_id = new_id()
        self.start_ms = int(time.time() * 1000)


class DeliveryTracer:
    """The delivery worker's attempt observer: :meth:`start` when an attempt begins (it adds the
    ``sw8`` header the subscriber receives), :meth:`end` with its result."""

    def __init__(self, reporter: SegmentReporter, *, service: str, instance: str) -> None:
        self.reporter = reporter
        self.service = service
        self.instance = instance
        self.segment = SegmentTemplate(service, instance)
        self._templates: dict[tuple[str, str, str], _DeliveryTemplates] = {}

    def _templates_for(self, spec: Any) -> _DeliveryTemplates:
        key = (spec.id, spec.topic, spec.url)
        found = self._templates.get(key)
        if found is None:
            if len(self._templates) >= 10_000:
                self._templates.clear()
            found = self._templates[key] = _DeliveryTemplates(self, spec, address_of(spec.url))
        return found

    def start(self, spec: Any, attributes: Mapping[str, Any], number: int, headers: dict[str, str]) -> Attempt:
        context = error = None
        value = attributes.get(EXTENSION)
        if value.__class__ is str:
            try:
                context = Sw8.decode(value)
            except ContextError as problem:
                error = str(problem)
        trace_id = context.trace_id if context is not None else (
            trace_id_for(attributes.get("traceparent")) or new_id())
        templates = self._templates_for(spec)
        attempt = Attempt(templates, number, trace_id, context, error)
        headers["sw8"] = f"1-{b64(trace_id)}-{b64(attempt.segment_id)}{templates.tail}"
        return attempt

    def end(self, attempt: Attempt, result: Any) -> None:
        """``result``: the attempt's ``AttemptResult`` (verdict, status, latency)."""
        now = int(time.time() * 1000)
        verdict = result.verdict.value
        failed = verdict != "delivered"
        templates = attempt.templates
        tags: dict[str, Any] = {"mesh.attempt": attempt.number, "mesh.outcome": verdict}
        entry_tags = tags if attempt.sw8_error is None else {**tags, "mesh.sw8_error": attempt.sw8_error}
        spans = [
            templates.consume.render(attempt.start_ms, now, failed, entry_tags,
                                     references(attempt.context) if attempt.context is not None else b""),
            templates.push.render(attempt.start_ms, now, failed, {**tags, "http.status_code": result.status}),
        ]
        self.reporter.report(self.segment.render(attempt.trace_id, attempt.segment_id, spans))


def service_name(application: str | None) -> str:
    """The SkyWalking service of a runtime: its application, or :data:`GATEWAY_SERVICE`."""
    return application or GATEWAY_SERVICE


def reporter_for(url: str, *, metric: str, registry: CollectorRegistry | None,
                 user_agent: str = "meshruntime", **options: Any) -> SegmentReporter:
    return SegmentReporter(url, counts=SegmentCounts(metric, registry), user_agent=user_agent, **options)

