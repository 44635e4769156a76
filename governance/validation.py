"""Validation warnings: configurations that are legal but probably not what anyone wants.

- a subscription whose application a deny rule keeps from subscribing to its topic;
- a routing rule that targets a deprecated topic;
- a routing rule whose copies the runtimes dropped because their data failed the target's schema
  (reported by the runtimes, meshruntime.routing_report), and one whose target's schema refuses
  data that its source admits (a structural comparison of the two schemas, as when it is saved);
- a routing rule that routes nothing because it is not approved, or because its source now covers
  a topic of a team that did not approve it (the compiler leaves it out: the same check);
- a subscription to a deprecated topic whose sunset has passed;
- a team with no owner (nobody can manage its members).

Each check takes a queryset, so an object's page asks about that object alone and the
Validation page about everything the user may see; the queries do not grow with the rows.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

import redis
from django.conf import settings
from django.db.models import Exists, Model, OuterRef, QuerySet
from django.urls import reverse
from django.utils import timezone

from meshadmin.models import Membership, Team
from meshruntime.policy import Policy
from meshruntime.routing_report import RuleReport, read_reports

from .models import RoutingRule
from .rules import TopicOwners, current_policy, routing_blocker_of, schema_gap_text, schema_gaps, schemas_for

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Finding:
    code: str  # a key of TITLES
    obj: Model
    message: str
    link: str | None = None  # somewhere to look further (the journey of a refused copy's event)
    link_text: str = ""

    @property
    def title(self) -> str:
        return TITLES[self.code]


TITLES = {
    "subscription_denied": "Subscription denied by a rule",
    "route_to_deprecated": "Routing into a deprecated topic",
    "route_not_approved": "Routing rule without the approval it needs",
    "route_copies_refused": "Routed copies dropped by the target's schema",
    "route_schema_gap": "Routing into a schema that refuses what the source admits",
    "subscription_past_sunset": "Subscription to a topic past its sunset",
    "team_without_owner": "Team without an owner",
}


def subscription_findings(subscriptions: QuerySet, policy: Policy | None = None) -> list[Finding]:
    from subscriptions.models import Subscription

    open_ones = list(subscriptions.filter(state__in=Subscription.OPEN_STATES)
                     .select_related("application", "topic").order_by("pk"))
    if not open_ones:
        return []
    policy = policy or current_policy()
    today = timezone.localdate()
    findings = []
    for sub in open_ones:
        decision = policy.explain(sub.application.name, sub.topic.name, "subscribe")
        rule = decision.deciding_rule
        if not decision.allowed and rule is not None:
            then = {sub.REQUESTED: "It cannot be approved until the rule changes.",
                    sub.PAUSED: "It cannot be resumed until the rule changes."}.get(
                sub.state, "The runtimes hold its delivery (its events wait in the topic) until the rule changes.")
            findings.append(Finding("subscription_denied", sub, (
                f"{sub.application} may not subscribe to {sub.topic}: rule {rule['id']} denies it "
                f"({rule['topic']}). {then}")))
        topic = sub.topic
        if topic.lifecycle == topic.DEPRECATED and topic.sunset and topic.sunset < today:
            findings.append(Finding("subscription_past_sunset", sub, (
                f"{topic} is deprecated and its sunset ({topic.sunset:%Y-%m-%d}) has passed: "
                f"move {sub.application} to its successor and revoke this subscription.")))
    return findings


@lru_cache(maxsize=4)
def _redis(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)


def routing_reports(rule_ids: list[str]) -> dict[str, RuleReport]:
    """What the runtimes reported about these rules' refused copies; {} when Redis does not answer
    (the page shows the other findings)."""
    try:
        return read_reports(_redis(settings.REDIS_URL), settings.MESH_KEY_PREFIX, rule_ids)
    except (redis.RedisError, OSError) as error:
        log.warning("routing reports unavailable: %s", error)
        return {}


def _refused_copies(rule: RoutingRule, report: RuleReport) -> Finding:
    targets: dict[str, int] = {}
    for (target, _reason), count in sorted(report.by_target.items()):
        targets[target] = targets.get(target, 0) + count
    counts = ", ".join(f"{count} into {target}" for target, count in targets.items())
    when = (datetime.fromtimestamp(report.last_at_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
            if report.last_at_ms else "recently")
    message = (f"{rule.rule_id} did not make {report.refused} cop{'y' if report.refused == 1 else 'ies'} "
               f"({counts}): their data fails the target's schema. The events themselves were stored in their "
               f"own topic; only the copies were dropped. The last: event {report.last_event_id} from "
               f"{report.last_source} into {report.last_target}, at {report.last_path} ({report.last_keyword}), "
               f"{when}. Narrow the rule's filters, or align the schemas.")
    link = reverse("tracing:journey", args=[report.last_event_id]) if report.last_event_id else None
    return Finding("route_copies_refused", rule, message, link, "the last one's journey")


def routing_findings(rules: QuerySet[RoutingRule]) -> list[Finding]:
    from topics.models import Topic

    findings: list[Finding] = []
    owners = TopicOwners.load()
    rows = list(rules.select_related("source_team").prefetch_related("targets").order_by("order", "pk"))
    if not rows:
        return findings
    reports = routing_reports([rule.rule_id for rule in rows])
    schemas = schemas_for(rows)
    for rule in rows:
        if rule.enabled and rule.targets.all():
            blocker = routing_blocker_of(rule, owners)
            if blocker is not None:
                findings.append(Finding("route_not_approved", rule, f"{rule.rule_id} routes nothing: {blocker}."))
        deprecated = sorted(t.name for t in rule.targets.all() if t.lifecycle == Topic.DEPRECATED)
        if deprecated:
            findings.append(Finding("route_to_deprecated", rule, (
                f"{rule.rule_id} routes events into deprecated {'topics' if len(deprecated) > 1 else 'topic'} "
                f"{', '.join(deprecated)}.")))
        report = reports.get(rule.rule_id)
        if report is not None:
            findings.append(_refused_copies(rule, report))
        for source, target, gaps in schema_gaps(rule.source_pattern, rule.targets.all(), schemas):
            text = schema_gap_text(source, target, gaps)
            findings.append(Finding("route_schema_gap", rule, f"{rule.rule_id}: {text}"))
    return findings


def team_findings(teams: QuerySet[Team]) -> list[Finding]:
    owners = Membership.objects.filter(team=OuterRef("pk"), role=Membership.OWNER)
    return [
        Finding("team_without_owner", team, f"{team} has no owner: nobody but staff can manage its members.")
        for team in teams.filter(~Exists(owners)).order_by("name")
    ]


def all_findings(user) -> list[Finding]:
    """Every warning about what ``user`` may see."""
    from subscriptions.models import Subscription

    return [
        *subscription_findings(Subscription.objects.restrict(user)),
        *routing_findings(RoutingRule.objects.restrict(user)),
        *team_findings(Team.objects.restrict(user)),
    ]


def findings_for(obj: Model, policy: Policy | None = None) -> list[Finding]:
    """The warnings about one object (a subscription, a routing rule or a team)."""
    from subscriptions.models import Subscription

    one = type(obj).objects.filter(pk=obj.pk)
    if isinstance(obj, Subscription):
        return subscription_findings(one, policy)
    if isinstance(obj, RoutingRule):
        return routing_findings(one)
    if isinstance(obj, Team):
        return team_findings(one)
    return []
