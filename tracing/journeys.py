"""An event's journey as the portal shows it: the steps runtimes recorded, in order, for one person.

Runtimes record the steps of each sampled event under ``journey:<event id>`` (a list of JSON
objects with a TTL, docs/meshconfig.md): ``accepted`` or ``denied`` and ``routed``/``stored`` (or
``copy_refused``, a routed copy that failed its target's schema) by the publish path
(meshruntime/publish.py), then ``attempt`` per delivery attempt and ``acked``
or ``dead_lettered`` per subscription (meshruntime/delivery/journal.py). Several runtimes write
to one list, so steps are ordered here by time, with the time between them.

Who sees what is ``tracing.access``: the journey belongs to the topic the event was published
to; someone who may not see that topic gets what an unknown id gets (404), and someone who may
see it but not its payloads gets the steps without what may quote the data (a schema refusal's
message, a subscriber's error text).

The store position of a ``stored`` step is not in the step: the publish path writes the steps in
the append's own round trip, before the store has chosen the position. :func:`locate_stored`
finds it with a bounded read of the store around the step's time.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from django.conf import settings
from django.utils import timezone

from meshruntime.cloudevents import loads
from meshruntime.journey import JourneyRecorder
from meshruntime.store import Store, StoredEntry
from rollout import redis_keys
from rollout.models import Runtime
from subscriptions.models import Subscription
from topics.models import Topic

from . import eventstore
from .access import may_see_payload, visible_topics

__all__ = ["Journey", "Missing", "Step", "explain_missing", "load_journey", "locate_stored"]

#: Steps read at most: a journey past this is shown truncated (and says so).
MAX_STEPS = 2000
#: Entries a stored step's position is looked for among, at most, around its time.
LOCATE_SCAN = 2000
#: The window around a stored step's time that its position is looked for in: the step's time
#: is the runtime's clock before the append, the position the store's clock after it.
LOCATE_BEFORE_MS = 2_000
LOCATE_AFTER_MS = 10_000

DELIVERY_STEPS = ("attempt", "acked", "dead_lettered")
#: What may quote an event's data, per step; masked for those who may not see payloads.
PAYLOAD_FIELDS = {"denied": ("message",), "attempt": ("error",), "dead_lettered": ("reason",),
                  "copy_refused": ("message",)}


@dataclass
class Step:
    kind: str
    at_ms: int
    runtime: str
    fields: dict[str, Any]
    since_start_ms: int = 0
    since_previous_ms: int | None = None
    position: str | None = None  # a ``stored`` step's place in its topic, once located
    store: Any = None  # a ``stored`` step's EventStore, once looked up

    @property
    def at(self) -> datetime:
        return datetime.fromtimestamp(self.at_ms / 1000, UTC)

    @property
    def lane(self) -> str:
        """``publish``, or the subscription a delivery step belongs to."""
        if self.kind in DELIVERY_STEPS:
            return str(self.fields.get("subscription", "?"))
        return "publish"

    def as_dict(self) -> dict[str, Any]:
        out = {"step": self.kind, "at": self.at_ms, "runtime": self.runtime, **self.fields,
               "since_start_ms": self.since_start_ms, "since_previous_ms": self.since_previous_ms}
        if self.kind == "stored":
            out["position"] = self.position
        return out


@dataclass
class Track:
    """One subscription's delivery of the event: its attempts and how it ended."""

    subscription_id: str
    subscription: Subscription | None  # None when the user may not see it, or it is gone
    steps: list[Step] = field(default_factory=list)

    @property
    def attempts(self) -> int:
        return sum(1 for s in self.steps if s.kind == "attempt")

    @property
    def outcome(self) -> str:
        kinds = {s.kind for s in self.steps}
        if "acked" in kinds:
            return "acked"
        if "dead_lettered" in kinds:
            return "dead_lettered"
        return "retrying"


@dataclass
class Journey:
    event_id: str
    topic_name: str
    topic: Topic | None
    payload_visible: bool
    steps: list[Step]
    tracks: list[Track]
    truncated: bool = False
    unreadable: int = 0  # steps that were not JSON objects with a step and a time
    event: StoredEntry | None = None  # the event in its topic, when it is still there and located

    @property
    def outcome(self) -> str:
        """denied, delivered, dead_lettered, retrying, or stored (no delivery recorded yet)."""
        kinds = {s.kind for s in self.steps}
        if "denied" in kinds and "accepted" not in kinds:
            return "denied"
        outcomes = {t.outcome for t in self.tracks}
        for outcome in ("retrying", "dead_lettered"):
            if outcome in outcomes:
                return outcome
        if outcomes:
            return "delivered"
        return "stored" if "stored" in kinds else "accepted"

    @property
    def lanes(self) -> list[str]:
        return ["publish", *(t.subscription_id for t in self.tracks)]

    def as_dict(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "topic": self.topic_name,
            "outcome": self.outcome,
            "payload_visible": self.payload_visible,
            "truncated": self.truncated,
            "steps": [s.as_dict() for s in self.steps],
            "subscriptions": [{"subscription": t.subscription_id, "outcome": t.outcome, "attempts": t.attempts}
                              for t in self.tracks],
        }


def read_steps(event_id: str) -> tuple[list[dict[str, Any]], bool, int]:
    """The recorded steps (at most :data:`MAX_STEPS`), whether there were more, and how many
    entries were unreadable."""
    client = redis_keys.client()
    key = redis_keys.keys().journey(event_id)
    raw = client.lrange(key, 0, MAX_STEPS)
    truncated = len(raw) > MAX_STEPS
    steps, unreadable = [], 0
    for item in raw[:MAX_STEPS]:
        try:
            step = orjson.loads(item)
        except orjson.JSONDecodeError:
            unreadable += 1
            continue
        if not isinstance(step, dict) or not isinstance(step.get("step"), str) or type(step.get("at")) is not int:
            unreadable += 1
            continue
        steps.append(step)
    return steps, truncated, unreadable


def _topic_name(steps: Iterable[dict[str, Any]]) -> str | None:
    """The topic the event was published to: that of its first accepted or denied step."""
    steps = list(steps)
    for step in steps:
        if step["step"] in ("accepted", "denied") and isinstance(step.get("topic"), str):
            return step["topic"]
    for step in steps:  # the publish steps are gone (a partial journey): the first stored one
        if step["step"] == "stored" and isinstance(step.get("topic"), str) and "rule" not in step:
            return step["topic"]
    return None


def _mask(kind: str, fields: dict[str, Any]) -> dict[str, Any]:
    hidden = PAYLOAD_FIELDS.get(kind, ())
    out = {name: value for name, value in fields.items() if name not in hidden}
    if kind == "dead_lettered" and isinstance(fields.get("reason"), str):
        out["reason"] = fields["reason"].split(":", 1)[0]  # rejected / exhausted, without the answer
    if hidden:
        out["masked"] = [name for name in hidden if name in fields]
    return out


def load_journey(event_id: str, user) -> Journey | None:
    """The journey of ``event_id`` as ``user`` may see it; None when there is none they may see."""
    raw, truncated, unreadable = read_steps(event_id)
    if not raw:
        return None
    topic_name = _topic_name(raw)
    if topic_name is None:
        return None
    topic = visible_topics(user).select_related("team", "store").filter(name=topic_name).first()
    if topic is None and not (user.is_staff or user.is_superuser):
        return None  # a topic they may not see, or one the catalog does not have (staff see those)
    payload_visible = may_see_payload(user, topic) if topic is not None else True
    ordered = sorted(enumerate(raw), key=lambda pair: (pair[1]["at"], pair[0]))
    steps: list[Step] = []
    start = ordered[0][1]["at"]
    previous = None
    for _index, record in ordered:
        fields = {k: v for k, v in record.items() if k not in ("step", "at", "runtime")}
        kind = record["step"]
        if not payload_visible:
            fields = _mask(kind, fields)
        at = record["at"]
        steps.append(Step(kind, at, str(record.get("runtime", "")), fields, at - start,
                          None if previous is None else at - previous))
        previous = at
    return Journey(event_id, topic_name, topic, payload_visible, steps, _tracks(steps, user), truncated, unreadable)


def _tracks(steps: list[Step], user) -> list[Track]:
    tracks: dict[str, Track] = {}
    for step in steps:
        if step.kind in DELIVERY_STEPS:
            tracks.setdefault(step.lane, Track(step.lane, None)).steps.append(step)
    pks = {int(name[4:]): name for name in tracks if name.startswith("sub-") and name[4:].isdigit()}
    for subscription in Subscription.objects.restrict(user).select_related("application").filter(pk__in=pks):
        tracks[pks[subscription.pk]].subscription = subscription
    return list(tracks.values())


# -- where the stored event is ------------------------------------------------------------------

def _find(entries: list[StoredEntry], needle: bytes, event_id: str) -> StoredEntry | None:
    for entry in entries:
        if needle in entry.event:  # cheap; confirmed by parsing, since the text may be in the data
            try:
                if loads(entry.event).get("id") == event_id:
                    return entry
            except (orjson.JSONDecodeError, AttributeError):
                continue
    return None


async def find_around(store: Store, topic: str, event_id: str, at_ms: int, *,
                      limit: int = LOCATE_SCAN) -> StoredEntry | None:
    """The entry of ``event_id`` among at most ``limit`` entries of ``topic`` near ``at_ms``."""
    needle = b'"id":' + orjson.dumps(event_id)
    after, scanned = None, 0
    while scanned < limit:
        count = min(500, limit - scanned)
        entries = await store.read_range(topic, count=count, after=after, from_ms=at_ms - LOCATE_BEFORE_MS,
                                         to_ms=at_ms + LOCATE_AFTER_MS)
        found = _find(entries, needle, event_id)
        if found is not None or len(entries) < count:
            return found
        scanned += len(entries)
        after = entries[-1].id
    return None


def locate_stored(journey: Journey, *, max_steps: int = 5) -> None:
    """Fill in the position of (the first ``max_steps``) stored steps and, for the published
    topic, the event itself. Bounded reads; raises ``eventstore.StoreUnavailable``."""
    stored = [s for s in journey.steps if s.kind == "stored" and isinstance(s.fields.get("topic"), str)]
    topics = {t.name: t for t in Topic.objects.select_related("store").filter(
        name__in={s.fields["topic"] for s in stored})}
    stored = [s for s in stored if s.fields["topic"] in topics]
    for step in stored:
        step.store = topics[step.fields["topic"]].store
    stored = stored[:max_steps]
    if not stored:
        return

    async def locate(store: Store) -> list[StoredEntry | None]:
        return [await find_around(store, s.fields["topic"], journey.event_id, s.at_ms) for s in stored]

    # Every stored step of one event is on the runtimes' store (one per mesh today).
    found = eventstore.with_store(topics[stored[0].fields["topic"]], locate)
    for step, entry in zip(stored, found, strict=True):
        if entry is not None:
            step.position = entry.id
            if step.fields["topic"] == journey.topic_name and "rule" not in step.fields:
                journey.event = entry


# -- no journey -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Sampling:
    """What a group of runtimes does with journeys, and whether it would record this id."""

    rate: float | None  # None: these runtimes do not report it
    ttl_seconds: int | None
    runtimes: int
    records_it: bool | None

    @property
    def percent(self) -> str:
        return "" if self.rate is None else percent(self.rate)

    @property
    def kept(self) -> str:
        return duration(self.ttl_seconds)


@dataclass(frozen=True)
class Missing:
    event_id: str
    likely: str  # not_sampled, expired_or_never_seen, depends, unknown
    message: str
    sampling: list[Sampling]

    def as_dict(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id, "likely": self.likely, "detail": self.message,
            "sampling": [{"sample_rate": s.rate, "ttl_seconds": s.ttl_seconds, "runtimes": s.runtimes,
                          "records_it": s.records_it} for s in self.sampling],
        }


def duration(seconds: int | None) -> str:
    if seconds is None:
        return "an unreported time"
    for unit, size in (("d", 86_400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def percent(rate: float) -> str:
    return f"{rate * 100:g} %"


def current_runtimes() -> list[Runtime]:
    """The runtimes that beat lately (all known ones when none did)."""
    recent = Runtime.objects.filter(
        last_seen__gte=timezone.now() - timedelta(seconds=settings.MESH_RUNTIME_GONE_SECONDS))
    return list(recent) or list(Runtime.objects.order_by("-last_seen")[:100])


def explain_missing(event_id: str) -> Missing:
    """Why ``event_id`` likely has no journey, from the sample rates and TTLs runtimes report.

    Sampling is decided by the event id (``JourneyRecorder.sampled``: CRC-32 of the id), so for
    each reported rate it is known, not guessed, whether the id would be recorded at all.
    """
    groups: dict[tuple[float | None, int | None], int] = {}
    for runtime in current_runtimes():
        key = (runtime.journey_sample_rate, runtime.journey_ttl_seconds)
        groups[key] = groups.get(key, 0) + 1
    sampling = []
    for (rate, ttl), n in sorted(groups.items(), key=lambda item: [(v is None, v or 0) for v in item[0]]):
        records_it = None if rate is None else JourneyRecorder("", sample_rate=rate).sampled(event_id)
        sampling.append(Sampling(rate, ttl, n, records_it))
    known = [s for s in sampling if s.records_it is not None]
    ttls = sorted({s.ttl_seconds for s in known if s.ttl_seconds is not None})
    kept = " or ".join(duration(t) for t in ttls) or "an unreported time"
    if not known:
        likely = "unknown"
        message = ("No journey is recorded for this id, and no runtime reports its journey sampling, so the "
                   "cause cannot be told: the journey expired, the event was not sampled, or the mesh "
                   "never saw this id.")
    elif not any(s.records_it for s in known):
        likely = "not_sampled"
        rates = " and ".join(percent(s.rate) for s in known)
        message = (f"Not sampled, most likely: at the sample rate of the runtimes ({rates}) this id is never "
                   "recorded. Sampling is decided by the event id, the same way on every runtime.")
    elif all(s.records_it for s in known):
        likely = "expired_or_never_seen"
        message = (f"Every runtime would record this id's journey, so either it expired (journeys are kept "
                   f"{kept}) or the mesh never saw this id.")
    else:
        likely = "depends"
        skip = " and ".join(percent(s.rate) for s in known if not s.records_it)
        record = " and ".join(percent(s.rate) for s in known if s.records_it)
        message = (f"It depends on the runtime that handled it: those sampling {skip} never record this id; "
                   f"those sampling {record} would, so if one of them did, the journey expired (kept {kept}) "
                   "or the id was never seen.")
    return Missing(event_id, likely, message, sampling)
