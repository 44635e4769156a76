"""E-mail about the review of routing rules that read another team's topics (meshadmin.notices).

- requested: the editors of the source team (they approve or reject);
- approved, rejected, revoked: the editors of the rule's team (they asked).
"""

from __future__ import annotations

from meshadmin import notices
from meshadmin.tasks import notify as _notify

from .models import RoutingRule

KIND = "routingrule"
EVENTS = ("requested", "approved", "rejected", "revoked")
#: Steps that e-mail the other side, and the event they announce.
NOTIFIED = {"approve": "approved", "reject": "rejected", "revoke": "revoked", "request": "requested"}


def notify(rule: RoutingRule, event: str, request) -> None:
    """E-mail the other side about ``event`` once the current transaction commits."""
    _notify(KIND, rule.pk, event, request)


def compose(pk: int, event: str, actor_id: int | None, base_url: str) -> notices.Notice | None:
    rule = RoutingRule.objects.select_related("team", "source_team").filter(pk=pk).first()
    if rule is None:
        return None
    who = notices.actor_name(actor_id)
    link = base_url.rstrip("/") + rule.get_absolute_url()
    targets = ", ".join(rule.targets.order_by("name").values_list("name", flat=True)) or "no topic"
    if event == "requested":
        subject = f"[Meshadmin] {rule.team} asks to route events out of {rule.source_pattern}"
        body = (f"{who} asks that {rule.rule_id} of {rule.team} copy the events of {rule.source_pattern}, "
                f"which {rule.source_team} owns, into {targets}.\n\n"
                f"Approve or reject it: {link}\nYour inbox: {base_url.rstrip('/')}/inbox/\n")
        team_id = rule.source_team_id
    else:
        subject = f"[Meshadmin] {rule.rule_id} ({rule.source_pattern} → {targets}): {event}"
        comment = f"\n\nTheir comment:\n{rule.reviewer_comment}" if rule.reviewer_comment else ""
        body = f"{who} {event} routing rule {rule.rule_id} of {rule.team}.{comment}\n\nDetails: {link}\n"
        team_id = rule.team_id
    return notices.Notice(subject, body, notices.editors_of(team_id, actor_id))


notices.register(KIND, compose, EVENTS)
