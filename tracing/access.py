"""Who sees what of the events on a topic: one rule for the live tail, the event browser, the
journey page, test events and the API (docs/architecture.md, "Who sees events").

Payloads can be personal data. Staff, members of the topic's team (any role) and members of a
team whose application holds an approved subscription to the topic (active or paused) see an
event whole. Every other signed-in user sees its public attributes and the size of its data,
nothing else: extensions too may carry personal data, so they are masked with the data.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from meshadmin.models import Membership
from meshadmin.querysets import team_ids
from subscriptions.models import Subscription
from topics.models import Topic

__all__ = ["PUBLIC_ATTRIBUTES", "mask", "may_see_payload", "visible_topics"]

#: What everyone signed in may see of any event on a topic they may see.
PUBLIC_ATTRIBUTES = ("id", "type", "source", "subject", "time")


def visible_topics(user):
    """The topics whose events ``user`` may watch at all (attributes at least)."""
    return Topic.objects.restrict(user)


def may_see_payload(user, topic: Topic) -> bool:
    """Whether ``user`` sees the data and every attribute of events on ``topic``."""
    if user is None or not user.is_authenticated or not user.is_active:
        return False
    if user.is_staff or user.is_superuser:
        return True
    if Membership.objects.filter(user=user, team_id=topic.team_id).exists():
        return True
    return Subscription.objects.filter(
        topic=topic, state__in=Subscription.LIVE_STATES, application__team__in=team_ids(user)
    ).exists()


def mask(attributes: Mapping[str, Any], data_size: int | None) -> dict[str, Any]:
    """The part of an event everyone may see: its public attributes and the size of its data."""
    masked = {name: attributes[name] for name in PUBLIC_ATTRIBUTES if name in attributes}
    masked["data_size"] = data_size
    return masked
