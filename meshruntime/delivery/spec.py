"""A subscription as the delivery engine uses it: the config entry, checked and compiled once."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from meshruntime.filters import Matcher, compile_filters

__all__ = ["SubscriptionSpec", "specs_from_config"]


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

    @classmethod
    def from_config(cls, entry: Mapping[str, Any]) -> SubscriptionSpec:
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
        )


def specs_from_config(doc: Mapping[str, Any], application: str | None) -> dict[str, SubscriptionSpec]:
    """The subscriptions this runtime delivers: its application's, or all of them in gateway mode.

    Revoked subscriptions are absent from the document, so absence is what revokes. Raises on a
    filter that does not compile, so that the document is refused as a whole.
    """
    return {
        entry["id"]: SubscriptionSpec.from_config(entry)
        for entry in doc.get("subscriptions", ())
        if application is None or entry["application"] == application
    }


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
