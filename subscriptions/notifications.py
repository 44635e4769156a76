"""E-mail about the review of subscriptions (meshadmin.notices), to the other side's editors.

- requested: the editors of the topic's team (they approve or reject);
- approved, rejected: the editors of the application's team (they asked).

The same for a change of an approved subscription (``notify_change``), whose mail shows the change.
The mail itself goes out from one Celery task for every kind of review (``meshadmin.tasks``),
enqueued on commit; this module says who is told what.
"""

from __future__ import annotations

from meshadmin import notices
from meshadmin.tasks import notify as _notify

from .models import Subscription, SubscriptionChange

KIND, CHANGE_KIND = "subscription", "subscriptionchange"
EVENTS = ("requested", "approved", "rejected")


def notify(subscription: Subscription, event: str, request) -> None:
    """E-mail the other side about ``event`` once the current transaction commits."""
    _notify(KIND, subscription.pk, event, request)


def notify_change(change: SubscriptionChange, event: str, request) -> None:
    """E-mail the other side about ``event`` of a change once the current transaction commits."""
    _notify(CHANGE_KIND, change.pk, event, request)


def compose(pk: int, event: str, actor_id: int | None, base_url: str) -> notices.Notice | None:
    sub = Subscription.objects.select_related("application__team", "topic__team").filter(pk=pk).first()
    if sub is None:
        return None
    who = notices.actor_name(actor_id)
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
    team_id = sub.topic.team_id if event == "requested" else sub.application.team_id
    return notices.Notice(subject, body, notices.editors_of(team_id, actor_id))


def compose_change(pk: int, event: str, actor_id: int | None, base_url: str) -> notices.Notice | None:
    change = (SubscriptionChange.objects.select_related("subscription__application__team", "subscription__topic__team")
              .filter(pk=pk).first())
    if change is None:
        return None
    sub = change.subscription
    who = notices.actor_name(actor_id)
    link = base_url.rstrip("/") + sub.get_absolute_url()
    lines = "\n".join(f"- {label}: {before!r} → {after!r}" for label, before, after in change.fields)
    if event == "requested":
        subject = f"[Meshadmin] {sub.application} asks to change its subscription to {sub.topic}"
        body = (f"{who} asks to change what {sub.application} (team {sub.application.team}) receives of "
                f"{sub.topic}, which {sub.topic.team} owns:\n{lines}\n\nThe approved settings keep delivering "
                f"until you decide.\nApprove or reject it: {link}\nYour inbox: {base_url.rstrip('/')}/inbox/\n")
        team_id = sub.topic.team_id
    else:
        subject = f"[Meshadmin] {sub.application} ← {sub.topic}: change {event}"
        comment = f"\n\nTheir comment:\n{change.reviewer_comment}" if change.reviewer_comment else ""
        body = f"{who} {event} the change of {sub.subscription_id}:\n{lines}{comment}\n\nDetails: {link}\n"
        team_id = sub.application.team_id
    return notices.Notice(subject, body, notices.editors_of(team_id, actor_id))


notices.register(KIND, compose, EVENTS)
notices.register(CHANGE_KIND, compose_change, EVENTS)
