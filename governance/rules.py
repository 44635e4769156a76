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
- an enabled routing rule must not start a cycle (see :func:`find_routing_cycle`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import QuerySet

from meshadmin.rows import raw_rows
from meshruntime.filters import FilterError, validate_filters
from meshruntime.policy import Policy, pattern_matches

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


def current_policy() -> Policy:
    """The policy the runtimes would enforce if the database were compiled now (no cache:
    the portal asks a few questions per page, each of them different)."""
    return Policy.from_rules(compiled_access_rules(), cache_size=0)


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
