"""A subscription as the delivery engine uses it: the config entry, checked and compiled once.

A subscription is delivered only while the access policy lets its application subscribe to its
topic (:func:`subscribe_holds`, the evaluator that decides every publish: indexed and cached).
While it does not, the subscription is *held*: like a paused one it reads nothing, so its events
stay in the store, its group keeps its position and its lag grows; it resumes with the first
document whose rules allow it again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from meshruntime.filters import Matcher, compile_filters
from meshruntime.policy import Policy

__all__ = ["SubscriptionSpec", "hold_reason", "specs_from_config", "subscribe_holds"]


@dataclass(frozen=True, slots=True)
class SubscriptionSpec:
    id: str
    topic: str
    application: str
    active: bool  # False: paused (keeps its position)
    url: str
    mode: str  # "binary" or "structured"
    timeout_s: float
    max_attempts: int
    backoff_base_ms: int
    backoff_cap_ms: int
    max_in_flight: int
    secret: str
    matches: Matcher
    filters_key: str  # the filters as given, to tell whether they changed
    responder: bool = False  # its 2xx answers are replies to requests (meshruntime.replies)
    held: str | None = None  # why the access policy holds its delivery (see subscribe_holds), None: it does not
    # whether it takes events now: active (not paused) and not held (an attribute: the worker reads it per event)
    delivering: bool = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "delivering", self.active and self.held is None)

    @classmethod
    def from_config(cls, entry: Mapping[str, Any], held: str | None = None) -> SubscriptionSpec:
        delivery = entry["delivery"]
        filters = entry.get("filters", [])
        return cls(
            id=entry["id"],
            topic=entry["topic"],
            application=entry["application"],
            active=entry.get("state", "active") == "active",
            url=delivery["url"],
            mode=delivery.get("mode", "binary"),
            timeout_s=delivery["timeout_ms"] / 1000.0,
            max_attempts=max(1, int(delivery["max_attempts"])),
            backoff_base_ms=int(delivery["backoff_base_ms"]),
            backoff_cap_ms=int(delivery["backoff_cap_ms"]),
            max_in_flight=max(1, int(delivery["max_in_flight"])),
            secret=entry["secret"],
            matches=compile_filters(filters),
            filters_key=repr(filters),
            responder=bool(entry.get("responder", False)),
            held=held,
        )


def hold_reason(policy: Policy, application: str, topic: str) -> str | None:
    """Why ``policy`` holds the delivery of ``application``'s subscription to ``topic``, or None
    when it lets the application subscribe: ``subscribe denied by rule rule-7 (deny orders.*)``."""
    if policy.decide(application, topic, "subscribe"):  # the hot path's cached decision
        return None
    rule = policy.explain(application, topic, "subscribe").deciding_rule
    if rule is None:
        return "subscribe denied: no access rule allows it (default deny)"
    return f"subscribe denied by rule {rule['id']} ({rule['effect']} {rule['topic']})"


def subscribe_holds(policy: Policy, entries: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Subscription id -> why its delivery is held, for the ``entries`` (the document's
    subscriptions) whose application ``policy`` does not let subscribe to their topic."""
    holds = {}
    for entry in entries:
        reason = hold_reason(policy, entry["application"], entry["topic"])
        if reason is not None:
            holds[entry["id"]] = reason
    return holds


def specs_from_config(doc: Mapping[str, Any], application: str | None, *, policy: Policy | None = None,
                      holds: Mapping[str, str] | None = None) -> dict[str, SubscriptionSpec]:
    """The subscriptions this runtime delivers: its application's, or all of them in gateway mode.

    Revoked subscriptions are absent from the document, so absence is what revokes. Each is held
    (``SubscriptionSpec.held``) while the access policy denies its application ``subscribe`` on
    its topic: ``holds`` when given (the delivery process gets them from the runtime), else
    decided by ``policy`` (the runtime's applied one), else by the document's own rules. Raises
    on a filter that does not compile, so that the document is refused as a whole.
    """
    entries = [entry for entry in doc.get("subscriptions", ())
               if application is None or entry["application"] == application]
    if holds is None:
        holds = subscribe_holds(policy if policy is not None else Policy.from_rules(doc.get("access_rules", ())),
                                entries)
    return {entry["id"]: SubscriptionSpec.from_config(entry, holds.get(entry["id"])) for entry in entries}


def group_start(doc: Mapping[str, Any], now_ms: int) -> str | int:
    """Where a new subscription's consumer group starts: when its document was compiled (ms).

    A new group at ``$`` would miss whatever was published between the approval and the moment
    a runtime applied the document; starting at the document's ``generated_at`` (never later
    than now) delivers those too, and every runtime that creates the group picks the same point.
    """
    generated = doc.get("generated_at")
    try:
        at_ms = int(datetime.fromisoformat(generated.replace("Z", "+00:00")).timestamp() * 1000)
    except (AttributeError, TypeError, ValueError):
        return "$"
    return min(at_ms, now_ms)
