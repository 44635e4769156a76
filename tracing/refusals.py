"""Refused publishes as a person sees them: who was refused where, why, and by which rule.

The runtimes tap a refusal as a record (``meshruntime.publish``: topic, application, reason,
status, message, rule, path, event id, how many events). Here each record becomes what one user
may see: only refusals on a topic or by an application they may see, with links to both and to
the deciding rule, and a sentence that says it ("checkout refused on orders.failed by rule deny
checkout publish orders.failed"). The runtime's own message can quote the refused data (a
schema error names the value), so it goes only to those who may see the topic's payloads
(``tracing.access``); the sentence, built from the record's fields, goes to everyone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from governance.models import AccessRule, Application
from governance.rules import rule_url

from .access import may_see_payload, visible_topics

__all__ = ["RefusalReader"]

_REASONS = {
    "forbidden": "no access rule allows it (default deny)",
    "schema_mismatch": "its data does not match the topic's schema",
    "unknown_topic": "there is no such topic",
    "too_large": "an event is larger than the runtime accepts",
    "too_many": "the request carries more events than the runtime accepts",
}


@dataclass
class RefusalReader:
    """Presents refusal records to one user; remembers what it looked up (call :meth:`forget`
    when the user's rights may have changed)."""

    user: Any
    _topics: dict[str, tuple[dict[str, Any] | None, bool]] = field(default_factory=dict)
    _applications: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    _rules: dict[str, dict[str, Any]] = field(default_factory=dict)

    def forget(self, user=None) -> None:
        if user is not None:
            self.user = user
        self._topics.clear()
        self._applications.clear()
        self._rules.clear()

    def present_all(self, records: Iterable[Any]) -> list[dict[str, Any]]:
        """The records this user may see, as they see them (runs queries: call it off the loop)."""
        shown = []
        for record in records:
            if isinstance(record, Mapping):
                presented = self.present(record)
                if presented is not None:
                    shown.append(presented)
        return shown

    def present(self, record: Mapping[str, Any]) -> dict[str, Any] | None:
        topic_name = str(record.get("topic") or "")
        application_name = str(record.get("application") or "")
        topic, payload = self._topic(topic_name)
        application = self._application(application_name)
        if topic is None and application is None:
            return None  # neither end is one this user may see
        reason = str(record.get("reason") or "")
        rule = self._rule(record.get("rule"))
        path = record.get("path")
        if reason == "forbidden" and rule is not None:
            why = f"by rule {rule['label']}"
        elif reason == "schema_mismatch" and path:
            why = f"its data does not match the topic's schema at {path}"
        else:
            why = _REASONS.get(reason, reason or "refused")
        who = application_name or "an unknown key"
        summary = f"{who} refused on {topic_name}: {why}" if not why.startswith("by rule") \
            else f"{who} refused on {topic_name} {why}"
        presented = {
            "topic": {"name": topic_name, "url": topic["url"] if topic else None},
            "application": {"name": application_name, "url": application["url"] if application else None},
            "reason": reason, "status": record.get("status"), "why": why, "summary": summary,
            "rule": rule, "path": path, "event_id": record.get("event_id"), "events": record.get("events"),
            "runtime": record.get("runtime"), "at": record.get("at"),
        }
        if payload:
            presented["message"] = record.get("message")
        return presented

    # -- look-ups, remembered ----------------------------------------------------------------------
    def _topic(self, name: str) -> tuple[dict[str, Any] | None, bool]:
        if name not in self._topics:
            topic = visible_topics(self.user).filter(name=name).first() if name else None
            if topic is None:
                self._topics[name] = (None, False)
            else:
                self._topics[name] = ({"url": topic.get_absolute_url()}, may_see_payload(self.user, topic))
        return self._topics[name]

    def _application(self, name: str) -> dict[str, Any] | None:
        if name not in self._applications:
            found = Application.objects.restrict(self.user).filter(name=name).first() if name else None
            self._applications[name] = None if found is None else {"url": found.get_absolute_url()}
        return self._applications[name]

    def _rule(self, rule_id: Any) -> dict[str, Any] | None:
        if not isinstance(rule_id, str) or not rule_id:
            return None
        if rule_id not in self._rules:
            kind, _, pk = rule_id.partition("-")
            found = AccessRule.objects.restrict(self.user).filter(pk=int(pk)).first() \
                if kind == "rule" and pk.isdigit() else None
            self._rules[rule_id] = {"id": rule_id, "label": str(found) if found else rule_id,
                                    "url": rule_url(rule_id) if found else None}
        return self._rules[rule_id]

