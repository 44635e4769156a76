"""E-mail about reviews, to the other side's editors.

What one team asks of another (a subscription, a change to one, a routing rule out of its
topics) is announced by e-mail: a request to the team that decides, the decision to the team
that asked. Each kind of request registers a *composer* here (from its app's ``ready()``): given
the object's id, the event, who acted and the site's address, it writes the :class:`Notice`, or
answers None when the object is gone. ``meshadmin.tasks.notify`` enqueues the mail on commit,
so a slow or failing mail server neither slows down nor undoes the review.

The person who acted gets no copy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django.contrib.auth import get_user_model

from .models import Membership


@dataclass(frozen=True)
class Notice:
    subject: str
    body: str
    recipients: list[str]


Composer = Callable[[int, str, "int | None", str], "Notice | None"]
_COMPOSERS: dict[str, tuple[Composer, tuple[str, ...]]] = {}


def register(kind: str, composer: Composer, events: tuple[str, ...]) -> None:
    """Make ``kind`` notices (for ``events``) composable by ``composer(pk, event, actor_id, base_url)``."""
    _COMPOSERS[kind] = (composer, events)


def check(kind: str, event: str) -> None:
    if kind not in _COMPOSERS:
        raise ValueError(f"unknown notice kind {kind!r}")
    if event not in _COMPOSERS[kind][1]:
        raise ValueError(f"unknown {kind} event {event!r}")


def compose(kind: str, pk: int, event: str, actor_id: int | None, base_url: str) -> Notice | None:
    check(kind, event)
    return _COMPOSERS[kind][0](pk, event, actor_id, base_url)


def editors_of(team_id: int | None, actor_id: int | None) -> list[str]:
    """The e-mail addresses of the team's owners and members, but the one who acted."""
    if team_id is None:
        return []
    users = (get_user_model().objects
             .filter(memberships__team_id=team_id, memberships__role__in=Membership.EDITOR_ROLES, is_active=True)
             .exclude(pk=actor_id).exclude(email="").order_by("email"))
    return list(users.values_list("email", flat=True).distinct())


def actor_name(actor_id: int | None) -> str:
    actor = get_user_model().objects.filter(pk=actor_id).first()
    return actor.get_username() if actor else "someone"
