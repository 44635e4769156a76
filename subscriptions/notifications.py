"""E-mail about the review of subscriptions (meshadmin.notices), to the other side's editors.

- requested: the editors of the topic's team (they approve or reject);
- approved, rejected: the editors of the application's team (they asked).
"""

from __future__ import annotations

from meshadmin import notices
from meshadmin.tasks import notify as _notify

from .models import Subscription

KIND = "subscription"
EVENTS = ("requested", "approved", "rejected")


def notify(subscription: Subscription, event: str, request) -> None:
    """E-mail the other side about ``event`` once the current transaction commits."""
    _notify(KIND, subscription.pk, event, request)


def compose(pk: int, event: str, actor_id: int | None, base_url: str) -> notices.Notice | None:
    sub = Subscription.objects.select_related("application__team", "topic__team").filter(pk=pk).first()
    if sub is None:
        return None
    who = notices.actor_name(actor_id)
    link = base_url.rstrip("/") + sub.get_absolute_url()
    if event == "requested":
        subject = f"[Meshadmin] {sub.application} asks to subscribe to {sub.topic}"
        body = (f"{who} asks that {sub.application} (team {sub.application.team}) receive the events of "
                f"{sub.topic}, which {sub.topic.team} owns, at {sub.webhook_url}.\n\n"
                f"Approve or reject it: {link}\nYour inbox: {base_url.rstrip('/')}/inbox/\n")
    else:
        subject = f"[Meshadmin] {sub.application} ← {sub.topic}: {event}"
        comment = f"\n\nTheir comment:\n{sub.reviewer_comment}" if sub.reviewer_comment else ""
        body = (f"{who} {event} the subscription of {sub.application} to {sub.topic}.{comment}\n\n"
                f"Details: {link}\n")
    team_id = sub.topic.team_id if event == "requested" else sub.application.team_id
    return notices.Notice(subject, body, notices.editors_of(team_id, actor_id))


notices.register(KIND, compose, EVENTS)
