"""The publish pipeline, independent of how the events arrived (CloudEvents or EventMesh HTTP).

For each request, against one configuration snapshot (:class:`~meshruntime.state.MeshState`):

1. authentication by application key                        -> 401 ``unauthenticated``
2. the topic exists                                         -> 404 ``unknown_topic``
3. the access policy lets the application publish there     -> 403 ``forbidden`` (names the rule)
4. the topic's store (and each routed copy's) has a connection here
                                                            -> 503 ``store_not_configured`` (names it)
   every event fits the size limit                          -> 413 ``too_large``
5. every event's data matches the topic's JSON Schema       -> 400 ``schema_mismatch`` (names the path)
6. routing rules add copies for their targets (extension ``meshroute`` = rule id); a copy into a
   topic with a schema is made only if the event's data passes that schema. One that fails is
   dropped, not the request: the producer is not refused for somebody else's rule. It is counted
   (``meshruntime_routed_copies_refused_total``), recorded in the journey (``copy_refused``, with
   the schema path) and reported for the routing rule's page (meshruntime.routing_report)
7. one append of the events and their copies, coalesced with other requests' appends
                                                            -> 503 ``store_unavailable`` on failure

A request is all or nothing: every check runs on every event before anything is appended, so a
refused request leaves nothing in the store. ``prepare`` does 2-6 and ``commit`` does 7, so that
an EventMesh batch spanning several topics is checked whole before any of it is written.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from .appender import AppendCoalescer
from .cloudevents import CloudEvent
from .journey import JourneyRecorder
from .metrics import RuntimeMetrics
from .policy import PolicyError, validate_topic_name
from .routing_report import RefusedCopy, RoutingReport
from .state import ROUTE_EXTENSION, AuthError, Identity, MeshState, TopicState
from .store import AppendEntry, JourneyStep, Store, StoreError
from .tap import Tap
from .tracing import new_traceparent

log = logging.getLogger(__name__)

__all__ = ["Limits", "Prepared", "Publisher", "Refusal", "ROUTE_EXTENSION"]


class Refusal(Exception):
    """A publish refused for a reason the client can act on. ``reason`` is the metric label."""

    def __init__(self, status: int, reason: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.details = details

    def body(self) -> dict[str, Any]:
        return {"error": self.reason, "status": self.status, "message": self.message, **self.details}


@dataclass(frozen=True, slots=True)
class Limits:
    max_event_bytes: int = 1024 * 1024  # one event, serialized
    max_request_bytes: int = 8 * 1024 * 1024  # one request body
    max_batch_events: int = 1000
    max_reply_wait_ms: int = 60_000  # EventMesh's request-reply (code 101) waits at most this long


@dataclass(slots=True)
class Prepared:
    """A checked request for one topic, ready to append."""

    identity: Identity
    topic: TopicState
    events: list[CloudEvent]
    entries: list[AppendEntry]
    # (topic, event, outcome fields) for the live tap, and routed-copy counts by rule
    copies: list[tuple[str, CloudEvent, str | None]]
    routed: dict[str, int]
    journey: list[JourneyStep] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    size: int = 0  # bytes of the events as stored (their copies not counted)
    refused_copies: list[RefusedCopy] = field(default_factory=list)  # copies the targets' schemas refused


class Publisher:
    def __init__(
        self,
        *,
        store: Store,
        coalescer: AppendCoalescer,
        metrics: RuntimeMetrics,
        journey: JourneyRecorder,
        tap: Tap | None,
        limits: Limits,
        routing_report: RoutingReport | None = None,
    ) -> None:
        self.store = store
        self.routing_report = routing_report  # refused copies, for the routing rules' pages
        self.coalescer = coalescer
        self.metrics = metrics
        self.journey = journey
        self.tap = tap
        self.limits = limits
        self.touched_topics: set[str] = set()
        self._background: set[asyncio.Task] = set()
        self._refused_since_log = 0
        self._next_refusal_log = 0.0
        self._next_copy_log = 0.0

    # -- checks ---------------------------------------------------------------------------------
    def authenticate(self, state: MeshState, authorization: str | None) -> Identity:
        """The identity behind an ``Authorization: Bearer <key>`` header (or a bare key)."""
        key = authorization
        if key:
            scheme, _, token = key.partition(" ")
            if scheme.lower() == "bearer":
                key = token.strip()
        try:
            return state.authenticate(key)
        except AuthError as error:
            raise self.refuse(Refusal(401, "unauthenticated", str(error))) from None

    def refuse(self, refusal: Refusal, n: int = 1, topic: str = "", application: str = "") -> Refusal:
        """Count ``refusal`` (of ``n`` events, on a ``topic`` of the configuration by ``application``
        when known) and return it to be raised."""
        self.metrics.count_refusal(refusal.reason, n, topic, application)
        return refusal

    def prepare(
        self, state: MeshState, identity: Identity, topic_name: str, events: list[CloudEvent],
        trace_id: str | None = None,
    ) -> Prepared:
        """Run every check on every event and build what to append; raises :class:`Refusal`.

        ``trace_id`` (SkyWalking's, see meshruntime.skywalking) goes into the ``accepted`` steps,
        so that the portal finds the trace of an event from its journey."""
        n = len(events)
        application = identity.application
        topic = state.topics.get(topic_name)
        if topic is None:
            message = f"unknown topic {topic_name!r}"
            try:
                validate_topic_name(topic_name)
            except PolicyError as problem:
                message += f" ({problem})"
            refusal = Refusal(404, "unknown_topic", message, topic=topic_name)
            self._denied(events, topic_name, application, refusal)
            raise self.refuse(refusal, n, application=application)  # the name is the client's: no label
        if not state.may_publish(application, topic_name):
            decision = state.explain_publish(application, topic_name)
            rule = decision.deciding_rule
            if rule is None:
                message = (f"application {application!r} may not publish to {topic_name!r}: "
                           "no access rule allows it (default deny)")
            else:
                message = (f"application {application!r} may not publish to {topic_name!r}: "
                           f"denied by rule {rule['id']} ({rule['effect']} {rule['topic']})")
            refusal = Refusal(403, "forbidden", message, topic=topic_name,
                              rule=None if rule is None else rule["id"])
            self._denied(events, topic_name, application, refusal)
            raise self.refuse(refusal, n, topic_name, application)
        refused = getattr(self.store, "refused", None)  # topics whose store this runtime cannot reach
        if refused:
            self._check_stores(refused, topic, events, application)
        if n > self.limits.max_batch_events:
            refusal = Refusal(413, "too_many", f"a request carries at most {self.limits.max_batch_events} "
                              f"events; this one has {n}", limit=self.limits.max_batch_events)
            self._tap_refusal(events, topic_name, application, refusal)
            raise self.refuse(refusal, n, topic_name, application)

        schema = topic.schema
        routes = topic.routes
        max_bytes = self.limits.max_event_bytes
        retention = topic.retention
        entries: list[AppendEntry] = []
        copies: list[tuple[str, CloudEvent, str | None]] = []
        routed: dict[str, int] = {}
        journey: list[JourneyStep] = []
        refused_copies: list[RefusedCopy] = []
        size = 0
        recorder = self.journey
        journey_on = recorder.enabled
        if journey_on:
            at_ms = int(time.time() * 1000)
            at = str(at_ms).encode()
            accepted = recorder.template("accepted", topic=topic_name, application=application,
                                         key_prefix=identity.key_prefix)
            stored = recorder.template("stored", topic=topic_name)
            if trace_id is not None:  # one per request: spliced in, not a cached template of its own
                accepted = (accepted[0], accepted[1][:-1] + b',"trace_id":' + orjson.dumps(trace_id) + b"}")
        for index, event in enumerate(events):
            attributes = event.attributes
            event_id = attributes["id"]
            if schema is not None:
                self._check_schema(schema, event, topic_name, index, events, application)
            if "traceparent" not in attributes:
                attributes["traceparent"] = new_traceparent()
            body = event.to_structured()
            if len(body) > max_bytes:
                refusal = Refusal(413, "too_large", f"event {event_id!r} is {len(body)} bytes; "
                                  f"the limit is {max_bytes}", index=index, event_id=event_id, limit=max_bytes)
                self._tap_refusal(events, topic_name, application, refusal)
                raise self.refuse(refusal, n, topic_name, application)
            size += len(body)
            entries.append(AppendEntry(topic_name, body, retention))
            copies.append((topic_name, event, None))
            sampled = journey_on and recorder.sampled(event_id)
            if sampled:
                journey.append(JourneyStep(event_id, accepted[0] + at + accepted[1]))
                copies_stored: list[JourneyStep] = []
            data = None  # the event's data as its targets' schemas read it, once
            for route in routes:
                if not route.matches(attributes):
                    continue
                refused = None
                if route.checks:  # targets with a schema of their own: the copy must pass it
                    if data is None:
                        data = event.json_data()
                    for target, target_schema in route.checks:
                        problem = target_schema.check_event_data(*data)
                        if problem is not None:
                            if refused is None:
                                refused = {}
                            refused[target] = problem
                if ROUTE_EXTENSION in attributes:  # a re-published copy: replace, do not repeat, the key
                    copy_body = event.with_extension(ROUTE_EXTENSION, route.id).to_structured()
                else:  # the same JSON object with one more member: no second serialization
                    copy_body = body[:-1] + route.json_member
                made = len(route.targets) - (0 if refused is None else len(refused))
                if made:
                    routed[route.id] = routed.get(route.id, 0) + made
                for target in route.targets:
                    if refused is not None and target in refused:
                        problem = refused[target]
                        refused_copies.append(RefusedCopy(route.id, topic_name, target, "schema_mismatch",
                                                          problem.path, problem.keyword, problem.message, event_id))
                        if sampled:
                            journey.append(recorder.step(
                                event_id, "copy_refused", at_ms, rule=route.id, source=topic_name, target=target,
                                reason="schema_mismatch", path=problem.path, message=
                                f"the copy does not match the schema of topic {target!r} at {problem.path}: "
                                f"{problem.message}; the event was stored, the copy dropped"))
                        continue
                    entries.append(AppendEntry(target, copy_body, state.topics[target].retention))
                    copies.append((target, event, route.id))
                    if sampled:
                        step = recorder.template("routed", rule=route.id, source=topic_name, target=target)
                        journey.append(JourneyStep(event_id, step[0] + at + step[1]))
                        step = recorder.template("stored", topic=target, rule=route.id)
                        copies_stored.append(JourneyStep(event_id, step[0] + at + step[1]))
            if sampled:
                journey.append(JourneyStep(event_id, stored[0] + at + stored[1]))
                journey.extend(copies_stored)
        warnings = []
        if topic.lifecycle == "deprecated":
            warnings.append(f"topic {topic_name!r} is deprecated"
                            + (f"; its sunset is {topic.sunset}" if topic.sunset else ""))
        return Prepared(identity, topic, events, entries, copies, routed, journey, warnings, size, refused_copies)

    def _check_stores(self, refused: Mapping[str, str], topic: TopicState, events: list[CloudEvent],
                      application: str) -> None:
        """503 when the topic, or a topic a route may copy it to, lives on a store this runtime has
        no connection for: nothing is stored, not even the copies that could be."""
        for name in (topic.name, *(target for route in topic.routes for target in route.targets)):
            why = refused.get(name)
            if why is not None:
                where = (f"topic {name!r} lives" if name == topic.name
                         else f"routing copies events of {topic.name!r} to {name!r}, which lives")
                refusal = Refusal(503, "store_not_configured",
                                  f"{where} on a store this runtime cannot use now: {why}; nothing was stored, "
                                  "retry once the runtime has the connection", topic=topic.name, unavailable=name)
                self._denied(events, topic.name, application, refusal)
                raise self.refuse(refusal, len(events), topic.name, application)

    def _check_schema(self, schema, event: CloudEvent, topic_name: str, index: int,
                      events: list[CloudEvent], application: str) -> None:
        attributes = event.attributes
        is_json, value = event.json_data()
        if not is_json:
            refusal = Refusal(400, "schema_mismatch",
                              f"topic {topic_name!r} requires JSON data matching its schema; "
                              f"event {attributes['id']!r} has "
                              f"{'no data' if event.data is None else 'data that is not JSON'}",
                              topic=topic_name, index=index, event_id=attributes["id"], path="data")
            self._denied(events, topic_name, application, refusal)
            raise self.refuse(refusal, len(events), topic_name, application)
        problem = schema.check(value)
        if problem is not None:
            refusal = Refusal(400, "schema_mismatch",
                              f"event {attributes['id']!r} does not match the schema of topic "
                              f"{topic_name!r} at {problem.path}: {problem.message}",
                              topic=topic_name, index=index, event_id=attributes["id"],
                              path=problem.path, pointer=problem.pointer)
            self._denied(events, topic_name, application, refusal)
            raise self.refuse(refusal, len(events), topic_name, application)

    # -- append ---------------------------------------------------------------------------------
    def submit(self, prepared: Sequence[Prepared]) -> asyncio.Future:
        """Queue every prepared request for one coalesced write, without waiting; the future's
        result is the stream ids. Hand it to :meth:`finish` once done."""
        if len(prepared) == 1:
            entries, journey = prepared[0].entries, prepared[0].journey
        else:
            entries = [e for p in prepared for e in p.entries]
            journey = [s for p in prepared for s in p.journey]
        return self.coalescer.submit(entries, journey)

    def finish(self, prepared: Sequence[Prepared], appended: asyncio.Future) -> None:
        """Count and tap what :meth:`submit` appended; raises :class:`Refusal` (503) if it failed."""
        error = appended.exception()
        if error is not None:
            refusal = Refusal(503, "store_unavailable", "the event store did not take the events; nothing was "
                              "stored, retry later")
            for p in prepared:
                self.refuse(refusal, len(p.events), p.topic.name, p.identity.application)
            self._log_refused_append(error, sum(len(p.events) for p in prepared))
            raise refusal from None
        stream_ids = appended.result()
        offset = 0
        tap = self.tap
        watched = tap.watched if tap is not None else ()
        metrics = self.metrics
        for p in prepared:
            topic = p.topic.name
            metrics.count_published(topic, p.identity.application, len(p.events), p.size)
            for rule, count in p.routed.items():
                metrics.count_routed(rule, count, topic)
            if p.refused_copies:
                self._copies_refused(p.refused_copies)
            if topic not in self.touched_topics:
                self.touched_topics.add(topic)
            if watched:
                for (target, event, rule), entry, stream_id in zip(p.copies, p.entries, stream_ids[offset:],
                                                                    strict=False):
                    if target in watched:
                        tap.offer_stored(target, event, entry.event, application=p.identity.application,
                                         stream_id=stream_id, rule=rule)
            offset += len(p.entries)

    def _copies_refused(self, refused: list[RefusedCopy]) -> None:
        """Count and report the copies that routing rules did not make (their events were stored)."""
        report = self.routing_report
        for copy in refused:
            self.metrics.count_copy_refused(copy.rule, copy.target, copy.reason)
            if report is not None:
                report.add(copy)
        now = time.monotonic()
        if now >= self._next_copy_log:  # at most one line a second, however many copies
            first = refused[0]
            log.warning("routing rule %s did not copy event %s into %s: its data fails that topic's schema at %s "
                        "(%d such copies in this request; the events were stored)", first.rule, first.event_id,
                        first.target, first.path, len(refused))
            self._next_copy_log = now + 1.0

    def _log_refused_append(self, error: BaseException, n: int) -> None:
        """At most one line a second while the store is away, however many requests fail."""
        self._refused_since_log += n
        now = time.monotonic()
        if now >= self._next_refusal_log:
            log.error("the event store did not take %d events (503 to their publishers): %s",
                      self._refused_since_log, error)
            self._refused_since_log = 0
            self._next_refusal_log = now + 1.0

    async def commit(self, prepared: Sequence[Prepared]) -> None:
        """Append every prepared request in one coalesced write; raises :class:`Refusal` (503)."""
        appended = self.submit(prepared)
        with contextlib.suppress(StoreError):
            await appended
        self.finish(prepared, appended)

    async def publish(
        self, state: MeshState, identity: Identity, topic: str, events: list[CloudEvent]
    ) -> Prepared:
        prepared = self.prepare(state, identity, topic, events)
        await self.commit([prepared])
        return prepared

    # -- refusals -------------------------------------------------------------------------------
    def _denied(self, events: list[CloudEvent], topic: str, application: str, refusal: Refusal) -> None:
        """Journey ``denied`` steps and tap copies for refused events (best effort, off the path).

        The step names what decided, as the answer does: the access rule (``rule``, None for the
        default deny) or the schema path (``path``), so the journey page can say it.
        """
        decided = {name: refusal.details[name] for name in ("rule", "path") if name in refusal.details}
        steps = [
            self.journey.step(e.attributes["id"], "denied", topic=topic, application=application,
                              reason=refusal.reason, status=refusal.status, message=refusal.message, **decided)
            for e in events if self.journey.enabled and self.journey.sampled(e.attributes["id"])
        ]
        if self.tap is not None and topic in self.tap.watched:
            for event in events:
                self.tap.offer(topic, event, "denied", application=application, reason=refusal.reason)
        self._tap_refusal(events, topic, application, refusal)
        if steps:
            task = asyncio.get_running_loop().create_task(self._record(steps))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    def _tap_refusal(self, events: list[CloudEvent], topic: str, application: str, refusal: Refusal) -> None:
        """One refusal record for the refusals panels, if someone watches its topic, its
        application or every refusal: why (reason, the deciding rule or the schema path, the
        message) and which events (the first refused id and how many)."""
        tap = self.tap
        if tap is None or not tap.watches_refusals(topic, application):
            return
        details = refusal.details
        event_id = details.get("event_id") or (events[0].attributes["id"] if events else None)
        tap.offer_refusal(topic, application, {
            "reason": refusal.reason, "status": refusal.status, "message": refusal.message,
            "rule": details.get("rule"), "path": details.get("path"), "event_id": event_id, "events": len(events)})

    async def drain_background(self) -> None:
        """Wait for the journey writes of refused requests (shutdown, tests)."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)

    async def _record(self, steps: list[JourneyStep]) -> None:
        try:
            await self.store.record_journey(steps)
        except StoreError as error:
            self.metrics.count_store_error("journey")
            log.warning("journey write failed: %s", error)
