"""Traces read from SkyWalking's OAP through its GraphQL query protocol (``SKYWALKING_URL``).

Runtimes started with ``--traces skywalking`` report a segment per publish and per delivery
attempt (meshruntime/skywalking.py); the OAP joins them, and the segments of subscribers that run
a SkyWalking agent, into traces. This module asks the OAP for them (``POST <SKYWALKING_URL>/graphql``):

- :func:`load_trace` — one trace by id (``queryTrace``), its spans laid out as a waterfall;
- :func:`search_traces` — traces by time, duration and error state (``queryBasicTraces``), of a
  topic (the ``mq.topic`` tag every mesh span carries; the OAP must list it in
  ``SW_SEARCHABLE_TAG_KEYS``, docs/tracing.md) or of an application (its service: a sidecar reports under its
  application's name).

Every call is bounded by ``SKYWALKING_TIMEOUT`` seconds; whatever goes wrong (not configured,
refused, slow, an error answer) raises :class:`Unavailable` with a sentence for the page.

Which trace is an event's: the runtime that accepted it writes the SkyWalking trace id into the
journey's ``accepted`` step (``trace_id``); failing that, the stored event's ``sw8`` extension
names it (see :func:`trace_id_of`).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from django.conf import settings

from meshruntime.cloudevents import loads
from meshruntime.sw8 import ContextError, Sw8, service_id

__all__ = ["Span", "Trace", "TraceRow", "Unavailable", "configured", "load_trace", "search_traces", "trace_id_of",
           "ui_link"]

TRACE_QUERY = """
query MeshTrace($traceId: ID!) {
  trace: queryTrace(traceId: $traceId) {
    spans {
      traceId segmentId spanId parentSpanId
      refs { traceId parentSegmentId parentSpanId type }
      serviceCode serviceInstanceName startTime endTime endpointName type peer component isError layer
      tags { key value }
      logs { time data { key value } }
    }
  }
}
"""

SEARCH_QUERY = """
query MeshTraces($condition: TraceQueryCondition) {
  result: queryBasicTraces(condition: $condition) {
    traces { segmentId endpointNames duration start isError traceIds }
  }
}
"""

#: Time ranges of the trace search, with the step the OAP is asked in.
RANGES = {"15m": timedelta(minutes=15), "1h": timedelta(hours=1), "6h": timedelta(hours=6),
          "24h": timedelta(hours=24), "7d": timedelta(days=7)}
PAGE_SIZE = 20
#: Spans shown at most; a trace past this is shown truncated (and says so).
MAX_SPANS = 500


class Unavailable(Exception):
    """SkyWalking could not answer; the message says why, for the page."""


def configured() -> bool:
    return bool(settings.SKYWALKING_URL)


def _endpoint() -> str:
    url = settings.SKYWALKING_URL
    if not url:
        raise Unavailable("SkyWalking is not configured: set SKYWALKING_URL to the OAP's address "
                          "(for example http://oap:12800) to see traces here.")
    if not url.startswith(("http://", "https://")):
        raise Unavailable(f"SKYWALKING_URL={url!r} is not an http(s) URL of the OAP (for example http://oap:12800).")
    return url.rstrip("/") + "/graphql"


def query(document: str, variables: dict[str, Any]) -> dict[str, Any]:
    """Run one GraphQL query; its ``data``, or :class:`Unavailable`."""
    url = _endpoint()
    timeout = settings.SKYWALKING_TIMEOUT
    request = urllib.request.Request(  # noqa: S310 - _endpoint() allows http(s) only
        url, data=orjson.dumps({"query": document, "variables": variables}), method="POST",
        headers={"Content-Type": "application/json", "Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            body = response.read(16 * 1024 * 1024)
    except urllib.error.HTTPError as error:
        raise Unavailable(f"SkyWalking at {settings.SKYWALKING_URL} answered HTTP {error.code}.") from None
    except TimeoutError:
        raise Unavailable(f"SkyWalking at {settings.SKYWALKING_URL} did not answer within {timeout} s.") from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        if isinstance(reason, TimeoutError):
            raise Unavailable(f"SkyWalking at {settings.SKYWALKING_URL} did not answer within {timeout} s.") from None
        raise Unavailable(f"SkyWalking at {settings.SKYWALKING_URL} cannot be reached ({reason}).") from None
    try:
        answer = json.loads(body)
    except ValueError:
        raise Unavailable(f"SkyWalking at {settings.SKYWALKING_URL} answered something that is not JSON.") from None
    if not isinstance(answer, dict):
        raise Unavailable(f"SkyWalking at {settings.SKYWALKING_URL} answered something that is not GraphQL.")
    if answer.get("errors"):
        messages = "; ".join(str(e.get("message", e)) for e in answer["errors"][:3] if isinstance(e, dict))
        raise Unavailable(f"SkyWalking refused the query: {messages or answer['errors']}")
    return answer.get("data") or {}


def ui_link(trace_id: str | None = None) -> str | None:
    """A link into SkyWalking's UI (``SKYWALKING_UI_URL``); with ``{trace_id}`` in it, to the trace."""
    base = settings.SKYWALKING_UI_URL
    if not base or not base.startswith(("http://", "https://")):
        return None
    if "{trace_id}" in base:
        return base.replace("{trace_id}", trace_id or "") if trace_id else base.split("{trace_id}")[0]
    return base


# -- one trace ---------------------------------------------------------------------------------------

@dataclass
class Span:
    segment_id: str
    span_id: int
    parent_span_id: int
    refs: list[dict[str, Any]]
    service: str
    instance: str
    start_ms: int
    end_ms: int
    endpoint: str
    kind: str  # Entry, Exit, Local
    peer: str
    component: str
    layer: str
    error: bool
    tags: list[tuple[str, str]]
    logs: list[dict[str, Any]]
    depth: int = 0
    offset_ms: int = 0

    @property
    def key(self) -> tuple[str, int]:
        return (self.segment_id, self.span_id)

    @property
    def duration_ms(self) -> int:
        return max(0, self.end_ms - self.start_ms)

    @property
    def tag_map(self) -> dict[str, str]:
        return dict(self.tags)

    def as_dict(self, *, details: bool) -> dict[str, Any]:
        out = {"service": self.service, "instance": self.instance, "endpoint": self.endpoint, "kind": self.kind,
               "layer": self.layer, "peer": self.peer, "error": self.error, "offset_ms": self.offset_ms,
               "duration_ms": self.duration_ms, "depth": self.depth}
        if details:
            out["tags"] = [list(pair) for pair in self.tags]
        return out


@dataclass
class Trace:
    trace_id: str
    spans: list[Span]
    truncated: bool = False
    details: bool = True  # tags and logs shown (payload visibility, see tracing.access)
    start_ms: int = 0
    duration_ms: int = 0
    services: list[str] = field(default_factory=list)

    @property
    def errors(self) -> int:
        return sum(1 for s in self.spans if s.error)

    def involves_topic(self, topic: str) -> bool:
        return any(s.tag_map.get("mq.topic") == topic for s in self.spans)

    def involves_application(self, application: str) -> bool:
        return any(s.service == application or s.tag_map.get("mesh.application") == application
                   for s in self.spans)

    def as_dict(self) -> dict[str, Any]:
        return {"trace_id": self.trace_id, "duration_ms": self.duration_ms, "truncated": self.truncated,
                "spans": [s.as_dict(details=self.details) for s in self.spans]}


def _span(raw: dict[str, Any]) -> Span:
    return Span(
        segment_id=str(raw["segmentId"]), span_id=int(raw["spanId"]), parent_span_id=int(raw["parentSpanId"]),
        refs=list(raw.get("refs") or []), service=raw.get("serviceCode") or "",
        instance=str(raw.get("serviceInstanceName") or ""), start_ms=int(raw["startTime"]),
        end_ms=int(raw["endTime"]), endpoint=raw.get("endpointName") or "", kind=raw.get("type") or "",
        peer=raw.get("peer") or "", component=raw.get("component") or "", layer=raw.get("layer") or "",
        error=bool(raw.get("isError")),
        tags=[(t["key"], t.get("value") or "") for t in raw.get("tags") or []],
        logs=list(raw.get("logs") or []))


def _waterfall(spans: list[Span]) -> list[Span]:
    """Spans in tree order (each after its parent, siblings by start), with depth and offset.

    A span's parent is the span before it in its segment (``parentSpanId``), or, for the first
    span of a segment, the span its reference names in another segment; a span whose parent is
    not in the trace (not reported, or too old) starts a root of its own.
    """
    by_key = {s.key: s for s in spans}
    children: dict[tuple[str, int] | None, list[Span]] = {}
    for span in spans:
        parent = None
        if span.parent_span_id >= 0 and (span.segment_id, span.parent_span_id) in by_key:
            parent = (span.segment_id, span.parent_span_id)
        else:
            for ref in span.refs:
                candidate = (str(ref.get("parentSegmentId")), int(ref.get("parentSpanId", -1)))
                if candidate in by_key and candidate != span.key:
                    parent = candidate
                    break
        children.setdefault(parent, []).append(span)
    start = min((s.start_ms for s in spans), default=0)
    ordered: list[Span] = []
    seen: set[tuple[str, int]] = set()

    def visit(span: Span, depth: int) -> None:
        if span.key in seen:  # a cycle in bad data: shown once
            return
        seen.add(span.key)
        span.depth, span.offset_ms = depth, span.start_ms - start
        ordered.append(span)
        for child in sorted(children.get(span.key, ()), key=lambda s: (s.start_ms, s.span_id)):
            visit(child, depth + 1)

    for root in sorted(children.get(None, ()), key=lambda s: (s.start_ms, s.segment_id, s.span_id)):
        visit(root, 0)
    for span in sorted(spans, key=lambda s: s.start_ms):  # anything only reachable through a cycle
        visit(span, 0)
    return ordered


def load_trace(trace_id: str, *, details: bool = True) -> Trace | None:
    """The trace ``trace_id`` as a waterfall, or None when the OAP has no span of it."""
    data = query(TRACE_QUERY, {"traceId": trace_id})
    raw = ((data.get("trace") or {}).get("spans")) or []
    if not raw:
        return None
    spans = [_span(s) for s in raw[:MAX_SPANS]]
    ordered = _waterfall(spans)
    start = min(s.start_ms for s in spans)
    end = max(s.end_ms for s in spans)
    services = list(dict.fromkeys(s.service for s in ordered))
    return Trace(trace_id, ordered, len(raw) > MAX_SPANS, details, start, end - start, services)


def trace_id_of(journey) -> str | None:
    """The SkyWalking trace of a journey (tracing.journeys.Journey): the ``trace_id`` of its
    ``accepted`` step, else the ``sw8`` extension of the stored event (when it was located)."""
    for step in journey.steps:
        if step.kind == "accepted" and isinstance(step.fields.get("trace_id"), str):
            return step.fields["trace_id"]
    event = journey.event
    if event is not None:
        try:
            value = loads(event.event).get("sw8")
            if isinstance(value, str):
                return Sw8.decode(value).trace_id
        except (orjson.JSONDecodeError, AttributeError, ContextError):
            return None
    return None


# -- search ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TraceRow:
    trace_id: str
    endpoints: list[str]
    duration_ms: int
    start: datetime | None
    error: bool


def _oap_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H%M")


def search_traces(*, range_key: str = "1h", topic: str | None = None, application: str | None = None,
                  min_ms: int | None = None, max_ms: int | None = None, state: str = "ALL", page: int = 1,
                  now: datetime | None = None) -> list[TraceRow]:
    """Traces that started in the last ``range_key`` (see :data:`RANGES`), newest first."""
    now = now or datetime.now(UTC)
    condition: dict[str, Any] = {
        "queryDuration": {"start": _oap_time(now - RANGES[range_key]), "end": _oap_time(now), "step": "MINUTE"},
        "traceState": state, "queryOrder": "BY_START_TIME", "paging": {"pageNum": page, "pageSize": PAGE_SIZE},
    }
    if topic is not None:
        condition["tags"] = [{"key": "mq.topic", "value": topic}]
    if application is not None:
        condition["serviceId"] = service_id(application)
    if min_ms is not None:
        condition["minTraceDuration"] = min_ms
    if max_ms is not None:
        condition["maxTraceDuration"] = max_ms
    data = query(SEARCH_QUERY, {"condition": condition})
    rows = []
    for raw in ((data.get("result") or {}).get("traces")) or []:
        ids = raw.get("traceIds") or []
        if not ids:
            continue
        rows.append(TraceRow(str(ids[0]), list(raw.get("endpointNames") or []), int(raw.get("duration") or 0),
                             _start(raw.get("start")), bool(raw.get("isError"))))
    return rows


def _start(value: Any) -> datetime | None:
    """The OAP gives a trace's start as epoch milliseconds in a string."""
    try:
        return datetime.fromtimestamp(int(value) / 1000, UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None
