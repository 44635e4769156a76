"""Access and routing rules as the mesh sees them, and the checks that guard writing them.

``compiled_access_rules`` is THE conversion from the database to the ``access_rules`` of the
MeshConfig contract (docs/meshconfig.md); the config compiler, the simulator, the validation
page and the topic and application pages all use it, so they cannot disagree with the runtime.

Who may write rules (forms and serializers call the checks below with the requesting user):

- staff may write any rule;
- a team's owners and members write the rules whose ``team`` is theirs (restricted querysets
  and the ``team`` choices enforce that);
- a non-staff author's access rule may only cover topics its team owns: an exact name of one of
  the team's topics, or a prefix under which every existing topic is the team's. ``*`` is for
  staff only. A rule can grant or deny rights on the team's own topics, to any application;
- a non-staff author's routing rule may only target topics its team owns (routing into a topic
  is publishing to it);
- a routing rule's source may cover the topics of at most one other team, whose owners approve
  the rule before it routes anything (routing out of a topic is reading it; see
  :func:`check_routing_source` and ``RoutingRule``); an approved rule stops routing while its
  source covers a topic of any third team (:class:`TopicOwners`, used by the compiler);
- an enabled routing rule must not start a cycle (see :func:`find_routing_cycle`).

And one that guards approving and resuming: a subscription that the access policy would not let
subscribe once approved (a deny rule covers its application and topic) cannot be approved, nor
resumed once paused, naming the rule (:func:`refuse_denied_subscription`); the runtimes would hold
its delivery anyway.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import deque
from collections.abc import Iterable
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import QuerySet

from meshadmin.rows import raw_rows
from meshadmin.workflow import Transition, TransitionRefused
from meshruntime.filters import FilterError, validate_filters
from meshruntime.policy import Decision, Policy, pattern_matches
from meshruntime.schema.compat import SchemaGap, refused_by

from .models import AccessRule, Application, RoutingRule


def compiled_access_rules(rules: QuerySet[AccessRule] | None = None,
                          subscriptions: QuerySet | None = None) -> list[dict[str, Any]]:
    """The ``access_rules`` of the MeshConfig document, sorted by ``id`` (as strings).

    - An access rule becomes ``rule-<pk>``. Its principals are application names: one for an
      application rule, every application of the team (sorted) for a team rule, ``"*"`` for
      everyone. A team rule whose team has no application applies to nobody and is left out
      (the contract requires at least one principal).
    - A live (active or paused) subscription becomes ``sub-<pk>``: allow its application to
      subscribe to its topic, so that explanations name the subscription that grants it.

    ``rules`` and ``subscriptions`` default to every rule and every subscription; pass
    querysets to compile a subset. Three queries whatever the number of rules. Deterministic:
    the same database gives the same list.
    """
    from subscriptions.models import Subscription

    rules = AccessRule.objects.all() if rules is None else rules
    subscriptions = Subscription.objects.all() if subscriptions is None else subscriptions
    team_apps: dict[int, list[str]] = {}
    for team_id, name in Application.objects.order_by("name").values_list("team_id", "name"):
        team_apps.setdefault(team_id, []).append(name)

    compiled = []
    # Plain rows, not model instances, nor Django's per-value converters (meshadmin.rows): the
    # push compiles the whole mesh after every change (benchmarks/propagation.py).
    rows = raw_rows(rules.order_by("pk").values_list("pk", "principal_kind", "principal_team_id",
                                                     "principal_application__name", "topic_pattern", "publish",
                                                     "subscribe", "effect", "description"))
    for pk, kind, team_id, application, pattern, publish, subscribe, effect, description in rows:
        if kind == AccessRule.EVERYONE:
            principals: str | list[str] = "*"
        elif kind == AccessRule.TEAM:
            principals = team_apps.get(team_id, [])
            if not principals:
                continue
        else:
            principals = [application]
        actions = [name for name, granted in (("publish", publish), ("subscribe", subscribe)) if granted]  # 0/1 too
        compiled.append({
            "id": f"rule-{pk}", "principals": principals, "topic": pattern,
            "actions": actions, "effect": effect, "description": description,
        })
    live = subscriptions.filter(state__in=Subscription.LIVE_STATES).order_by("pk")
    for pk, application, topic in live.values_list("pk", "application__name", "topic__name"):
        compiled.append({
            "id": f"sub-{pk}", "principals": [application], "topic": topic, "actions": ["subscribe"],
            "effect": "allow", "description": f"approved subscription sub-{pk}",
        })
    return sorted(compiled, key=lambda rule: rule["id"])


def compiled_routing_rules() -> list[dict[str, Any]]:
    """The ``routing_rules`` of the MeshConfig document, sorted by ``id``: THE conversion (the
    compiler, the simulator and the validation page use it).

    A rule routes when :func:`route_blocker` finds nothing against it: enabled, with a target
    (the contract requires one), approved, and reading no topic of a team that did not approve
    it. Three queries whatever the number of rules.
    """
    targets: dict[int, list[str]] = {}
    through = RoutingRule.targets.through.objects.filter(routingrule__enabled=True,
                                                         routingrule__state=RoutingRule.APPROVED)
    for rule_id, topic in through.order_by("topic__name").values_list("routingrule_id", "topic__name"):
        targets.setdefault(rule_id, []).append(topic)
    owners = TopicOwners.load()
    rows = RoutingRule.objects.filter(enabled=True, state=RoutingRule.APPROVED).values_list(
        "pk", "source_pattern", "filters", "order", "team_id", "source_team_id")
    rules = [
        {"id": f"route-{pk}", "source": source, "filters": filters or [], "targets": targets[pk], "order": order}
        for pk, source, filters, order, team_id, source_team_id in rows
        if route_blocker(state=RoutingRule.APPROVED, enabled=True, targets=len(targets.get(pk, ())), source=source,
                         team_id=team_id, source_team_id=source_team_id, owners=owners) is None
    ]
    return sorted(rules, key=lambda rule: rule["id"])


def current_policy() -> Policy:
    """The policy the runtimes would enforce if the database were compiled now (no cache:
    the portal asks a few questions per page, each of them different)."""
    return Policy.from_rules(compiled_access_rules(), cache_size=0)


def subscribe_decision_once_approved(subscription) -> Decision:
    """Whether the runtimes would let ``subscription``'s application subscribe to its topic once it
    is approved: the policy they would enforce, with the grant its approval adds (``sub-<pk>``).
    Denied only by a deny rule, which then decides."""
    grant = {"id": subscription.subscription_id, "principals": [subscription.application.name],
             "topic": subscription.topic.name, "actions": ["subscribe"], "effect": "allow",
             "description": f"approved subscription {subscription.subscription_id}"}
    rules = [rule for rule in compiled_access_rules() if rule["id"] != grant["id"]]
    policy = Policy.from_rules([*rules, grant], cache_size=0)
    return policy.explain(subscription.application.name, subscription.topic.name, "subscribe")


class SubscribeDenied(TransitionRefused):
    """Approving or resuming a subscription that the access policy would hold (HTTP 409: the rules
    conflict)."""

    status = 409


#: The steps that make a subscription deliver, and so must be refused while a rule denies it.
_DELIVERING_STEPS = ("approve", "resume")


def refuse_denied_subscription(sender, *, instance, step: Transition, by, **kwargs) -> None:
    """``meshadmin.workflow.transition_checked`` receiver for subscriptions: refuse to approve or to
    resume one whose application a deny rule keeps from subscribing to its topic, naming the rule.
    (Pausing and revoking stay allowed: they deliver nothing.)"""
    if step.name not in _DELIVERING_STEPS:
        return
    decision = subscribe_decision_once_approved(instance)
    rule = decision.deciding_rule
    if decision.allowed or rule is None:
        return
    raise SubscribeDenied(
        f"{instance.subscription_id} cannot be {step.done}: access rule {rule['id']} ({rule['effect']} "
        f"subscribe {rule['topic']}) denies {instance.application} subscribing to {instance.topic}, so "
        "the runtimes would deliver nothing. Change or remove that rule first.")


def rule_url(rule_id: str) -> str | None:
    """The page of the rule behind a compiled id (``rule-12``, ``sub-7``, ``route-3``)."""
    from django.urls import reverse

    kind, _, pk = rule_id.partition("-")
    names = {"rule": "governance:accessrule", "sub": "subscriptions:subscription", "route": "governance:routingrule"}
    if kind not in names or not pk.isdigit():
        return None
    return reverse(names[kind], args=[int(pk)])


# Checks shared by forms and serializers


def check_filters(value: Any, field: str = "filters") -> None:
    """Filters the runtime would accept, or a ValidationError naming where they are wrong."""
    try:
        validate_filters(value)
    except FilterError as exc:
        raise ValidationError({field: f"{exc.path}: {exc.problem}."}) from None


def check_access_rule_authority(user, team, pattern: str) -> None:
    """Refuse a non-staff author's pattern that covers a topic another team owns (see module doc)."""
    from topics.models import Topic

    if user.is_staff or user.is_superuser or team is None or not pattern:
        return
    if pattern == "*":
        raise ValidationError({"topic_pattern": "Only staff may write a rule for every topic (*)."})
    if pattern.endswith(".*"):
        prefix = pattern[:-1]
        others = (Topic.objects.filter(name__startswith=prefix).exclude(team=team)
                  .order_by("name").values_list("name", flat=True)[:3])
        if others:
            raise ValidationError({"topic_pattern": (
                f"{pattern} also covers topics that {team} does not own ({', '.join(others)}): "
                "a team writes rules only for its own topics. Use a narrower pattern, or ask staff.")})
        return
    owner = Topic.objects.filter(name=pattern).values_list("team__name", flat=True).first()
    if owner is None:
        raise ValidationError({"topic_pattern": f"There is no topic {pattern}: a team writes rules only "
                                                "for topics it owns."})
    if owner != team.name:
        raise ValidationError({"topic_pattern": f"{pattern} belongs to {owner}, not to {team}: a team "
                                                "writes rules only for its own topics."})


class TopicOwners:
    """Which team owns each topic, to ask which teams' topics a pattern covers: one query, then a
    dictionary for exact names and a sorted list for prefixes (so a compile of 10,000 rules does
    not scan 10,000 topics per rule)."""

    def __init__(self, rows: Iterable[tuple[str, int]]) -> None:
        pairs = sorted(rows)
        self.names = [name for name, _team in pairs]
        self.teams = [team for _name, team in pairs]
        self.by_name = dict(pairs)

    @classmethod
    def load(cls) -> TopicOwners:
        from topics.models import Topic

        return cls(Topic.objects.values_list("name", "team_id"))

    def covered(self, pattern: str) -> Iterable[tuple[str, int]]:
        """(topic, team id) of every topic ``pattern`` covers, in name order."""
        if pattern == "*":
            yield from zip(self.names, self.teams, strict=True)
        elif pattern.endswith(".*"):
            prefix = pattern[:-1]
            index = bisect_left(self.names, prefix)
            while index < len(self.names) and self.names[index].startswith(prefix):
                yield self.names[index], self.teams[index]
                index += 1
        elif pattern in self.by_name:
            yield pattern, self.by_name[pattern]

    def first_outside(self, pattern: str, teams: set[int | None]) -> str | None:
        """The first topic ``pattern`` covers that none of ``teams`` owns, or None."""
        return next((name for name, team in self.covered(pattern) if team not in teams), None)


class TopicSchemas:
    """The topics' names, and the data schemas of those asked for (:meth:`fetch`: one query per
    batch, each schema once), to compare routing rules' sources with their targets
    (:func:`schema_gaps`) for a page or a response however many rules it shows."""

    def __init__(self, names: Iterable[str]) -> None:
        self.names = sorted(names)
        self.known = frozenset(self.names)
        self.by_name: dict[str, Any] = {}  # name -> schema (None: none), once fetched

    @classmethod
    def load(cls) -> TopicSchemas:
        from topics.models import Topic

        return cls(Topic.objects.values_list("name", flat=True))

    def fetch(self, names: Iterable[str]) -> None:
        """Load the schemas of ``names`` not loaded yet."""
        from topics.models import Topic

        missing = sorted({name for name in names if name not in self.by_name})
        for start in range(0, len(missing), 1000):
            batch = missing[start:start + 1000]
            self.by_name.update(dict.fromkeys(batch))
            for name, schema in Topic.objects.filter(name__in=batch).values_list("name", "data_schema"):
                self.by_name[name] = schema if schema not in ("", None) else None

    def covered(self, pattern: str) -> list[str]:
        """The topics ``pattern`` covers, by name."""
        if pattern.endswith(".*") or pattern == "*":
            prefix = "" if pattern == "*" else pattern[:-1]
            start = bisect_left(self.names, prefix)
            out = []
            for name in self.names[start:]:
                if not name.startswith(prefix):
                    break
                out.append(name)
            return out
        return [pattern] if pattern in self.known else []


#: Source topics a rule's schemas are compared for, at most (a pattern may cover thousands).
SCHEMA_GAP_SOURCES = 50


def schemas_for(routing_rules: Iterable[RoutingRule]) -> TopicSchemas:
    """The schemas :func:`schema_gaps` needs for ``routing_rules`` (their targets prefetched), in
    two queries however many rules there are."""
    schemas = TopicSchemas.load()
    schemas.fetch(name for rule in routing_rules
                  for name in (*schemas.covered(rule.source_pattern)[:SCHEMA_GAP_SOURCES],
                               *(target.name for target in rule.targets.all())))
    return schemas


def schema_gaps(source_pattern: str, targets: Iterable,
                schemas: TopicSchemas | None = None) -> list[tuple[str, str, list[SchemaGap]]]:
    """(source topic, target topic, gaps) wherever a target's schema refuses data that a topic the
    source pattern covers admits (meshruntime.schema.compat: a simple structural comparison). The
    runtimes drop such copies, so a rule's authors are told when they save it. Targets without a
    schema, and a target equal to its source (never copied) or with the same schema, are skipped."""
    schemas = schemas or TopicSchemas.load()
    found = []
    target_names = sorted({getattr(t, "name", t) for t in targets})
    sources = schemas.covered(source_pattern)[:SCHEMA_GAP_SOURCES]
    schemas.fetch([*sources, *target_names])
    for source in sources:
        source_schema = schemas.by_name.get(source)
        for target in target_names:
            target_schema = schemas.by_name.get(target)
            if target == source or target_schema is None or target_schema == source_schema:
                continue
            gaps = refused_by(source_schema, target_schema)
            if gaps:
                found.append((source, target, gaps))
    return found


def schema_gap_text(source: str, target: str, gaps: list[SchemaGap]) -> str:
    """One sentence for people: a save's warning, a rule's finding."""
    shown = "; ".join(str(gap) for gap in gaps[:3]) + (f"; and {len(gaps) - 3} more" if len(gaps) > 3 else "")
    return (f"{target}'s schema refuses data that {source} admits ({shown}): the runtimes drop such copies "
            f"(the events stay in {source}).")


def route_blocker(*, state: str, enabled: bool, targets: int, source: str, team_id: int,
                  source_team_id: int | None, owners: TopicOwners) -> str | None:
    """Why a routing rule is left out of the configuration, or None if it is compiled. The
    compiler, the validation page, the rule's page and the simulator all ask this, so they agree."""
    if not enabled:
        return "it is disabled"
    if not targets:
        return "it has no target"
    if state != RoutingRule.APPROVED:
        return {RoutingRule.REQUESTED: "it awaits the approval of the team whose topics it reads",
                RoutingRule.REJECTED: "the team whose topics it reads rejected it",
                RoutingRule.REVOKED: "the team whose topics it reads revoked its approval"}[state]
    outside = owners.first_outside(source, {team_id, source_team_id})
    if outside is not None:
        return (f"its source now covers {outside}, which neither its team nor the team that approved it "
                "owns; edit the rule to ask that topic's team")
    return None


def routing_blocker_of(rule: RoutingRule, owners: TopicOwners | None = None) -> str | None:
    """:func:`route_blocker` for one saved rule."""
    return route_blocker(state=rule.state, enabled=rule.enabled, targets=len(rule.targets.all()),
                         source=rule.source_pattern, team_id=rule.team_id, source_team_id=rule.source_team_id,
                         owners=owners or TopicOwners.load())


def foreign_source_teams(team, pattern: str) -> list:
    """The teams other than ``team`` whose topics ``pattern`` covers now, by name."""
    from meshadmin.models import Team

    if team is None or not pattern:
        return []
    team_ids = {owner for _name, owner in TopicOwners.load().covered(pattern)} - {team.pk}
    return list(Team.objects.filter(pk__in=team_ids).order_by("name"))


def check_routing_source(team, pattern: str):
    """The other team whose topics the source ``pattern`` covers (None: only ``team``'s own), or a
    ValidationError when it covers several: each of them would have to approve, so the rule is
    split instead, one rule per team's topics. Staff included: an approval is a team's."""
    foreign = foreign_source_teams(team, pattern)
    if len(foreign) > 1:
        names = ", ".join(str(t) for t in foreign[:-1]) + f" and {foreign[-1]}"
        raise ValidationError({"source_pattern": (
            f"{pattern} covers topics of {names}: a routing rule reads the topics of at most one other "
            "team, whose owners approve it. Write one rule per team's topics.")})
    return foreign[0] if foreign else None


def check_routing_targets(user, team, targets: Iterable) -> None:
    """Refuse a non-staff author's target that another team owns (routing into it publishes to it)."""
    if user.is_staff or user.is_superuser or team is None:
        return
    foreign = sorted(topic.name for topic in targets if topic.team_id != team.pk)
    if foreign:
        raise ValidationError({"targets": f"{team} does not own {', '.join(foreign)}: a team routes events "
                                          "only into its own topics."})


def find_routing_cycle(source: str, targets: Iterable[str], *, exclude_pk: int | None = None) -> list[str] | None:
    """The shortest path by which a rule ``source -> targets`` would route an event back to ``source``.

    The graph: an event on topic ``t`` is copied to the targets of every enabled rule whose
    source pattern covers ``t``. The candidate rule closes a cycle when, starting from one of
    its targets, that graph reaches a topic its own source covers (the target itself: the
    direct case). Returns ``[target, rule id, topic, rule id, ..., topic covered by source]``,
    like ``["audit.orders", "route-5", "orders.copy"]``, or None. ``exclude_pk`` is the rule
    being edited, whose stored version must not count.
    """
    others = (RoutingRule.objects.filter(enabled=True).exclude(pk=exclude_pk).order_by("order", "pk")
              .prefetch_related("targets"))
    edges = [(rule.rule_id, rule.source_pattern, sorted(t.name for t in rule.targets.all())) for rule in others]
    starts = sorted(set(targets))
    came_from: dict[str, tuple[str, str] | None] = dict.fromkeys(starts)
    queue = deque(starts)
    while queue:
        topic = queue.popleft()
        if pattern_matches(source, topic):
            path = [topic]
            while came_from[path[0]] is not None:
                previous, rule_id = came_from[path[0]]
                path[:0] = [previous, rule_id]
            return path
        for rule_id, pattern, rule_targets in edges:
            if pattern_matches(pattern, topic):
                for target in rule_targets:
                    if target not in came_from:
                        came_from[target] = (topic, rule_id)
                        queue.append(target)
    return None


def check_routing_cycle(source: str, targets: Iterable, enabled: bool, *, exclude_pk: int | None) -> None:
    """Refuse an enabled rule that would close a routing cycle, naming every hop of it."""
    if not enabled or not source:
        return
    names = [getattr(topic, "name", topic) for topic in targets]
    path = find_routing_cycle(source, names, exclude_pk=exclude_pk)
    if path is None:
        return
    hops = f"{source} —this rule→ {path[0]}"
    for index in range(1, len(path), 2):
        hops += f" —{path[index]}→ {path[index + 1]}"
    raise ValidationError({"targets": (
        f"This rule would route events in a cycle: {hops}, which {source} covers again. "
        "Remove a target, or change the source pattern.")})
