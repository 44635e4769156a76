"""Test events: a person sends one event to a topic as one of their team's applications.

The portal answers what a runtime would, because it runs the runtime's own publish path
(``meshruntime.publish.Publisher``: the access decision with the rule that decided, the topic's
schema check with the failing path, the routing rules, the size limit) on the latest *published*
configuration document, and appends through the store interface with the journey steps in the
same write. So 202 and the id, 403 and the rule, 400 and the schema path mean exactly what they
would from a runtime; nothing is stored unless all checks pass.

The event carries the extension ``meshsender`` (the person's username) and the action is in
the audit log, whatever the answer. Its id is chosen so that every runtime's journey sampling
records it (sampling is decided by the id), so its journey can be followed to every subscriber.
"""

from __future__ import annotations

import json
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from django.conf import settings

from governance.models import Application
from meshadmin.audit import record_action
from meshadmin.querysets import CHANGE
from meshruntime.appender import AppendCoalescer
from meshruntime.cloudevents import CORE_ATTRIBUTES, CloudEvent, EventError, loads, loads_exact
from meshruntime.journey import JourneyRecorder
from meshruntime.metrics import RuntimeMetrics
from meshruntime.publish import Limits, Publisher, Refusal
from meshruntime.state import Identity, MeshState
from meshruntime.store import Store
from meshruntime.tap import Tap
from rollout.models import ConfigVersion
from topics.models import Topic

from . import eventstore
from .journeys import current_runtimes

__all__ = ["SENDER_EXTENSION", "Answer", "TestEvent", "check_data", "published_state", "send", "sender_applications"]

#: The extension naming the person who sent a test event.
SENDER_EXTENSION = "meshsender"
#: The runtime name on the journey steps the portal records.
PORTAL_RUNTIME = "portal"
#: Attributes the portal sets itself, and the members that hold the data (the form's own field):
#: a test event's extensions may not name them.
SET_BY_PORTAL = frozenset({*CORE_ATTRIBUTES, SENDER_EXTENSION, "data", "data_base64"})
#: What JSON counts as whitespace: around a value, it is not part of it.
JSON_WHITESPACE = " \t\n\r"

_RECORDER = JourneyRecorder(PORTAL_RUNTIME, sample_rate=1.0)
_STATES: OrderedDict[tuple[int, str], MeshState] = OrderedDict()


def sender_applications(user):
    """The applications ``user`` may send test events as: those of the teams they edit (all for staff)."""
    return Application.objects.restrict(user, CHANGE).select_related("team").order_by("name")


def published_state() -> MeshState | None:
    """The latest published configuration, compiled as a runtime compiles it (kept per version)."""
    latest = (ConfigVersion.objects.filter(published_at__isnull=False, document__isnull=False)
              .defer("document", "diff", "changes").order_by("-version").first())
    if latest is None:
        return None
    key = (latest.version, latest.checksum)
    state = _STATES.get(key)
    if state is None:
        document = ConfigVersion.objects.values_list("document", flat=True).get(pk=latest.pk)
        state = MeshState.build(document)
        _STATES[key] = state
        while len(_STATES) > 2:
            _STATES.popitem(last=False)
    return state


def sampled_id() -> str:
    """A fresh event id whose journey every reporting runtime records (their rates above 0)."""
    recorders = [JourneyRecorder("", sample_rate=rate)
                 for rate in {r.journey_sample_rate for r in current_runtimes()} if rate]
    for _ in range(100_000):
        candidate = str(uuid.uuid4())
        if all(recorder.sampled(candidate) for recorder in recorders):
            return candidate
    return candidate  # rates so small that no id is likely to be kept: send it all the same


@dataclass
class TestEvent:
    """What the person asked to send (validated by the form or the API serializer)."""

    __test__ = False  # not a pytest class, whatever its name

    application: Application
    type: str
    source: str
    subject: str = ""
    extensions: dict[str, Any] = field(default_factory=dict)
    #: The data's JSON text as the person typed it (None: no data). It is sent as this text, never
    #: parsed and written again, which would round numbers a double cannot hold.
    data: str | None = None


@dataclass
class Answer:
    """What a runtime would have answered: its status and JSON body."""

    status: int
    body: dict[str, Any]

    @property
    def event_id(self) -> str | None:
        return self.body.get("id") or self.body.get("event_id")

    @property
    def accepted(self) -> bool:
        return self.status == 202


class BadEvent(ValueError):
    """The event is not a valid CloudEvent (an extension's name or value); ``field`` says which input."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def check_extensions(extensions: Any) -> dict[str, Any]:
    """A JSON object of extension attributes, none of which the portal sets itself."""
    if not isinstance(extensions, dict):
        raise BadEvent("extensions", "Extensions are a JSON object of names to values, like {\"region\": \"eu\"}.")
    taken = sorted(set(extensions) & SET_BY_PORTAL)
    if taken:
        raise BadEvent("extensions", f"{', '.join(taken)} {'is' if len(taken) == 1 else 'are'} set by the portal "
                                     "or by a field of this form, not as an extension.")
    return extensions


def check_data(text: str) -> tuple[bytes, Any]:
    """The JSON data typed as ``text``: the bytes the event carries (the text itself, less the
    whitespace around it) and the value a runtime reads from them. Raises :class:`BadEvent` for
    what is not JSON, NaN and Infinity included.

    The mesh delivers events exactly as published (docs/delivery.md), so the data is never parsed
    and written again: ``0.1000000000000000055511151231257827`` would become ``0.1``, and an
    integer beyond 64 bits could not be written at all.
    """
    try:
        loads_exact(text)  # the standard library's messages say what is wrong and where
    except json.JSONDecodeError as error:
        raise BadEvent("data", f"Not JSON: {error.msg} at line {error.lineno}, column {error.colno}.") from None
    except ValueError as error:  # NaN, Infinity, -Infinity
        raise BadEvent("data", f"Not JSON: {error} (JSON has no NaN or Infinity).") from None
    raw = text.strip(JSON_WHITESPACE).encode("utf-8")
    try:
        value = loads(raw)  # what the runtimes and the portal read stored events with (it refuses lone surrogates)
    except orjson.JSONDecodeError as error:
        raise BadEvent("data", f"Not JSON a runtime reads: {error.msg} at line {error.lineno}, "
                               f"column {error.colno}.") from None
    return raw, value


def build_event(spec: TestEvent, *, sender: str, event_id: str) -> CloudEvent:
    """The CloudEvent to publish; raises :class:`BadEvent` naming what CloudEvents refuses.

    Its data is kept as a runtime keeps a producer's JSON data: the text as written (``raw_json``,
    which is what is stored and delivered) and the value read from it (for the schema check).
    """
    attributes: dict[str, Any] = {
        "specversion": "1.0", "id": event_id, "source": spec.source, "type": spec.type,
        "time": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        **check_extensions(spec.extensions), SENDER_EXTENSION: sender,
    }
    if spec.subject:
        attributes["subject"] = spec.subject
    checked = None if spec.data is None else check_data(spec.data)
    if checked is not None:
        attributes["datacontenttype"] = "application/json"
    try:
        event = CloudEvent.from_structured(attributes)
    except EventError as error:
        name = str(error)
        where = "extensions" if any(f"{n!r}" in name for n in spec.extensions) else "event"
        raise BadEvent(where, f"Not a valid CloudEvent: {error}.") from None
    if checked is None:
        return event
    raw, value = checked
    return CloudEvent(event.attributes, value, raw_json=raw)


async def _publish(store: Store, state: MeshState, identity: Identity, topic: str, event: CloudEvent):
    # The live tap too, as a runtime's would: someone watching the topic (or where it is routed)
    # sees the test event arrive, from runtime "portal".
    tap = Tap(store.client, prefix=settings.MESH_KEY_PREFIX, runtime_id=PORTAL_RUNTIME, topics=state.topics.keys)
    await tap.refresh()
    publisher = Publisher(store=store, coalescer=AppendCoalescer(store), metrics=RuntimeMetrics(),
                          journey=_RECORDER, tap=tap, limits=Limits())
    try:
        return await publisher.publish(state, identity, topic, [event])
    finally:
        await publisher.drain_background()  # the journey of a refusal is written off the path
        await tap.stop()  # sends what it holds


def send(topic: Topic, spec: TestEvent, *, user) -> Answer:
    """Check and append one test event as ``spec.application``; audited whatever the answer.

    Raises :class:`BadEvent` for input that is not a CloudEvent (nothing sent, nothing audited).
    """
    event = build_event(spec, sender=user.get_username(), event_id=sampled_id())
    answer = _answer(topic, spec, event)
    details = {k: answer.body[k] for k in ("error", "rule", "path") if k in answer.body}
    record_action(topic, "send test event", event_id=event.id, application=spec.application.name,
                  type=spec.type, status=answer.status, **details)
    return answer


def _answer(topic: Topic, spec: TestEvent, event: CloudEvent) -> Answer:
    state = published_state()
    if state is None:
        return Answer(503, {"error": "not_ready", "status": 503, "event_id": event.id,
                            "message": "no configuration has been published yet: no runtime would accept it"})
    application = spec.application.name
    if application not in state.applications:
        return Answer(409, {"error": "not_published", "status": 409, "event_id": event.id,
                            "message": f"application {application!r} is not in the published configuration "
                                       f"(version {state.version}); it will be with the next push"})
    identity = Identity(application, state.applications[application], key_prefix="")
    try:
        prepared = eventstore.with_store(topic, lambda store: _publish(store, state, identity, topic.name, event))
    except Refusal as refusal:
        return Answer(refusal.status, {**refusal.body(), "event_id": event.id, "config_version": state.version})
    except eventstore.StoreUnavailable as error:
        return Answer(503, {"error": "store_unavailable", "status": 503, "event_id": event.id, "message": str(error)})
    return Answer(202, {"id": event.id, "topic": topic.name, "config_version": state.version,
                        "copies": sum(prepared.routed.values()), "warnings": prepared.warnings,
                        "event": event.to_structured_dict()})
