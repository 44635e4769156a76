"""SkyWalking's cross-process context (the ``sw8`` header) and segments in its native protocol.

Pure functions and small classes, no I/O: the runtime's publish path and delivery child build
segments with them (:mod:`meshruntime.skywalking` sends them), and the portal decodes the
``sw8`` extension of a stored event with them to find the event's trace.

A segment is what one process did for one trace (``SegmentObject`` of SkyWalking's
``language-agent/Tracing.proto``); it is sent as JSON in protobuf's JSON mapping (lowerCamelCase
names, enums by name). Two segments join one trace through a ``SegmentReference`` on the later
one's entry span, built from the ``sw8`` value the earlier one's exit span handed on:

    sw8: <sample>-<trace id>-<parent segment id>-<parent span id>-<parent service>-
         <parent service instance>-<parent endpoint>-<address used at the client>

with every field but the sample flag and the span id in base64 (standard alphabet, padded).
"""

from __future__ import annotations

import base64
import binascii
import random
import re
from dataclasses import dataclass
from typing import Any

import orjson

__all__ = ["COMPONENT_PYTHON", "ContextError", "SegmentTemplate", "SpanTemplate", "Sw8", "b64", "new_id",
           "references", "service_id", "trace_id_for"]

#: ``Python`` in SkyWalking's component-libraries.yml: the runtime's own spans.
COMPONENT_PYTHON = 7000
#: Longest ``sw8`` value read; a longer one is ignored as malformed (it is a request header).
MAX_SW8 = 2048
_HEX32 = re.compile(r"[0-9a-f]{32}")


class ContextError(ValueError):
    """An ``sw8`` value that does not follow the format; the message names the field."""


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode("ascii")


def _unb64(value: str, field: str) -> str:
    try:
        return base64.b64decode(value.encode("ascii"), validate=True).decode()
    except (binascii.Error, UnicodeError, ValueError):
        raise ContextError(f"sw8: the {field} is not base64 of UTF-8 text") from None


@dataclass(frozen=True, slots=True)
class Sw8:
    """One ``sw8`` value: the span a later segment continues from."""

    trace_id: str
    segment_id: str
    span_id: int
    service: str
    instance: str
    endpoint: str
    peer: str  # the address the client used to reach the next process
    sampled: bool = True

    def encode(self) -> str:
        return "-".join((
            "1" if self.sampled else "0", b64(self.trace_id), b64(self.segment_id), str(self.span_id),
            b64(self.service), b64(self.instance), b64(self.endpoint), b64(self.peer)))

    @classmethod
    def decode(cls, value: str) -> Sw8:
        """Parse an ``sw8`` value; raises :class:`ContextError` naming what is wrong."""
        if len(value) > MAX_SW8:
            raise ContextError(f"sw8: longer than {MAX_SW8} characters")
        parts = value.strip().split("-")
        if len(parts) != 8:
            raise ContextError(f"sw8: expected 8 fields separated by '-', got {len(parts)}")
        sample, trace, segment_, span, service, instance, endpoint, peer = parts
        if sample not in ("0", "1"):
            raise ContextError(f"sw8: the sample flag must be 0 or 1, got {sample[:8]!r}")
        if not span.isdigit():
            raise ContextError(f"sw8: the parent span id must be a number, got {span[:12]!r}")
        trace_id = _unb64(trace, "trace id")
        segment_id = _unb64(segment_, "parent segment id")
        if not trace_id or not segment_id:
            raise ContextError("sw8: the trace id and the parent segment id must not be empty")
        return cls(trace_id, segment_id, int(span), _unb64(service, "parent service"),
                   _unb64(instance, "parent service instance"), _unb64(endpoint, "parent endpoint"),
                   _unb64(peer, "target address"), sample == "1")

    def reference(self) -> dict[str, Any]:
        """The ``SegmentReference`` of the span that continues this context in another process."""
        return {"refType": "CrossProcess", "traceId": self.trace_id, "parentTraceSegmentId": self.segment_id,
                "parentSpanId": self.span_id, "parentService": self.service,
                "parentServiceInstance": self.instance, "parentEndpoint": self.endpoint,
                "networkAddressUsedAtPeer": self.peer}


def new_id() -> str:
    """A fresh segment (or trace) id: 32 lower-case hex digits, the form of a W3C trace id. Not
    for secrets (ids need only be unique): the Mersenne Twister, no system call."""
    return "%032x" % random.getrandbits(128)  # noqa: UP031 - the fastest spelling


def trace_id_for(traceparent: str | None) -> str | None:
    """The W3C trace id of a ``traceparent`` value, used as the SkyWalking trace id when no
    ``sw8`` came in, so that both headers a subscriber receives name the same trace."""
    if traceparent and len(traceparent) >= 35 and traceparent[2] == "-":
        candidate = traceparent[3:35]
        if _HEX32.fullmatch(candidate) and candidate != "0" * 32:
            return candidate
    return None


def service_id(service: str) -> str:
    """The OAP's id of a normal service: base64 of its name and ``.1`` (query protocol,
    metadata-v2.graphqls, ``type Service``)."""
    return f"{b64(service)}.1"


def _tags(tags: dict[str, Any]) -> list[dict[str, str]]:
    return [{"key": key, "value": str(value)} for key, value in tags.items() if value is not None]


class SpanTemplate:
    """The JSON of a ``SpanObject`` whose name, kind, layer, peer and some tags are fixed, with its
    times, error flag, other tags and references spliced in.

    A segment is built for every publish and every delivery attempt; most of its JSON is the same
    for every publish to a topic, so it is encoded once (as the journey steps are, see
    meshruntime.journey) and the rest is put in place with bytes formatting.
    """

    __slots__ = ("_head", "_tags")

    def __init__(self, span_id: int, parent: int, operation: str, kind: str, layer: str, *, peer: str = "",
                 tags: dict[str, Any] | None = None) -> None:
        fixed: dict[str, Any] = {"spanId": span_id, "parentSpanId": parent, "operationName": operation,
                                 "spanType": kind, "spanLayer": layer, "componentId": COMPONENT_PYTHON}
        if peer:
            fixed["peer"] = peer
        self._head = orjson.dumps(fixed)[:-1]
        self._tags = orjson.dumps(_tags(tags or {}))[1:-1]

    def render(self, start_ms: int, end_ms: int, error: bool, tags: dict[str, Any] | None = None,
               refs: bytes = b"") -> bytes:
        """The span; ``refs`` from :func:`references` (or nothing)."""
        fixed, extra = self._tags, orjson.dumps(_tags(tags))[1:-1] if tags else b""
        joined = fixed + b"," + extra if fixed and extra else fixed or extra
        return b'%s,"startTime":%d,"endTime":%d,"isError":%s,"tags":[%s]%s}' % (
            self._head, start_ms, end_ms, b"true" if error else b"false", joined, refs)


def references(*contexts: Sw8) -> bytes:
    """The ``refs`` member of a span continuing ``contexts`` (for :meth:`SpanTemplate.render`)."""
    return b',"refs":' + orjson.dumps([c.reference() for c in contexts]) if contexts else b""


class SegmentTemplate:
    """The JSON of a ``SegmentObject`` of one service instance, its ids and spans spliced in."""

    __slots__ = ("_owner",)

    def __init__(self, service: str, instance: str) -> None:
        self._owner = orjson.dumps({"service": service, "serviceInstance": instance})[1:-1]

    def render(self, trace_id: str, segment_id: str, spans: list[bytes]) -> bytes:
        return b'{"traceId":%s,"traceSegmentId":%s,%s,"spans":[%s]}' % (
            orjson.dumps(trace_id), orjson.dumps(segment_id), self._owner, b",".join(spans))
