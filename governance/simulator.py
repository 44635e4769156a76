"""The policy simulator: what the runtimes would decide, and why, if the database were compiled now.

Every answer comes from ``meshruntime.policy`` over :func:`governance.rules.compiled_access_rules`,
the same rules the config compiler publishes, so the simulator cannot disagree with the mesh. A
publish also says where routing rules copy the event (:func:`governance.rules.compiled_routing_rules`,
the compiler's own: a rule that awaits approval copies nothing here either).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from meshruntime.policy import ACTIONS, Decision, Policy, pattern_matches

from .models import Application
from .rules import compiled_routing_rules, current_policy, rule_url


@dataclass(frozen=True)
class Explanation:
    """A decision with links to the rules behind it, for pages and the API."""

    application: str
    topic: str
    action: str
    decision: Decision
    #: Routing rules that copy a published event (when their filters match it), for a publish.
    routes: list[dict[str, Any]] = field(default_factory=list)

    @property
    def allowed(self) -> bool:
        return self.decision.allowed

    @property
    def deciding_rule(self) -> dict[str, Any] | None:
        rule = self.decision.deciding_rule
        return None if rule is None else {**rule, "url": rule_url(rule["id"])}

    @property
    def matched(self) -> list[dict[str, Any]]:
        return [{**rule, "url": rule_url(rule["id"])} for rule in self.decision.matched]

    def as_dict(self) -> dict[str, Any]:
        return {"application": self.application, "topic": self.topic, "action": self.action,
                "allowed": self.allowed, "reason": self.decision.reason,
                "deciding_rule": self.deciding_rule, "matched": self.matched, "routes": self.routes}


def simulate(application: str, topic: str, action: str, policy: Policy | None = None) -> Explanation:
    """May ``application`` (a name) do ``action`` on ``topic`` (a name)? With every rule that matched."""
    policy = policy or current_policy()
    decision = policy.explain(application, topic, action)
    routes = []
    if action == "publish" and decision.allowed:
        routes = [{**route, "url": rule_url(route["id"])} for route in compiled_routing_rules()
                  if pattern_matches(route["source"], topic)]
    return Explanation(application, topic, action, decision, routes)


def who_may(topic: str, policy: Policy | None = None) -> dict[str, list[str]]:
    """The applications that may publish and that may subscribe to ``topic``, by name."""
    policy = policy or current_policy()
    names = list(Application.objects.order_by("name").values_list("name", flat=True))
    return {action: policy.who_may(topic, action, names) for action in ACTIONS}


def capabilities(application: str, policy: Policy | None = None) -> dict[str, list[str]]:
    """The catalog topics ``application`` may publish and subscribe to, by name."""
    from topics.models import Topic

    policy = policy or current_policy()
    topics = list(Topic.objects.order_by("name").values_list("name", flat=True))
    return {action: [t for t in topics if policy.decide(application, t, action)] for action in ACTIONS}
