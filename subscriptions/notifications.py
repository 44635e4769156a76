"""E-mail about the review of subscriptions, to the other side's editors.

- requested: the editors of the topic's team (they approve or reject);
- approved, rejected: the editors of the application's team (they asked).

The person who acted gets no copy. Mail goes out from a Celery task enqueued on commit
(``subscriptions.tasks.notify``), so a slow or failing mail server neither slows down nor undoes
the review; the task retries what can succeed on retry. This module only says who is told what.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth import get_user_model

from meshadmin.models import Membership

from .models import Subscription

EVENTS = ("requested", "approved", "rejected")


@dataclass(frozen=True)
class Notice:
    subject: str
    body: str
    recipients: list[str]


def recipients(subscription: Subscription, event: str, actor_id: int | None) -> list[str]:
    team_id = subscription.topic.team_id if event == "requested" else subscription.application.team_id
    users = (get_user_model().objects
             .filter(memberships__team_id=team_id, memberships__role__in=Membership.EDITOR_ROLES, is_active=True)
             .exclude(pk=actor_id).exclude(email="").order_by("email"))
    return list(users.values_list("email", flat=True).distinct())


def compose(subscription: Subscription, event: str, actor_id: int | None, base_url: str) -> Notice:
    sub = subscription
    actor = get_user_model().objects.filter(pk=actor_id).first()
    who = actor.get_username() if actor else "someone"
    link = base_url.rstrip("/") + sub.get_absolute_url()
    if event == "requested":
        subject = f"[Meshadmin] {sub.application} asks to subscribe to {sub.topic}"
        body = (f"{who} asks that {sub.application} (team {sub.application.team}) receive the events of "
                f"{sub.topic}, which {sub.topic.team} owns, at {sub.target_url}.\n\n"
                f"Approve or reject it: {link}\nYour inbox: {base_url.rstrip('/')}/inbox/\n")
    else:
        subject = f"[Meshadmin] {sub.application} ← {sub.topic}: {event}"
        comment = f"\n\nTheir comment:\n{sub.reviewer_comment}" if sub.reviewer_comment else ""
        body = (f"{who} {event} the subscription of {sub.application} to {sub.topic}.{comment}\n\n"
                f"Details: {link}\n")
    return Notice(subject, body, recipients(sub, event, actor_id))
