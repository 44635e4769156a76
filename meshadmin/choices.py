"""The related objects a user may pick, in a form or in the API: one rule for both.

A ``team`` field offers the teams in which the user may create things (owner or member; every
team for staff). Any other related field offers what the user may see, or, where a form or
serializer names the field in ``choice_actions``, what the user may change (the application a
new key or subscription is for). Forms (``MeshModelForm``) and serializers
(``MeshModelSerializer``) both ask :class:`RelatedChoices`, so the API never offers what a page
would refuse, nor the other way round.
"""

from __future__ import annotations

from django.db.models import QuerySet

from .models import Membership, Team
from .querysets import VIEW


def editor_teams(user) -> QuerySet:
    """Teams in which ``user`` may create and change things (owner or member; all for staff)."""
    if not user.is_authenticated:
        return Team.objects.none()
    if user.is_staff or user.is_superuser:
        return Team.objects.all()
    return Team.objects.filter(memberships__user=user, memberships__role__in=Membership.EDITOR_ROLES)


class RelatedChoices:
    """Declares how a form's or serializer's related fields are narrowed to ``user``.

    ``team_fields`` offer :func:`editor_teams`; ``choice_actions`` maps a field to the action
    the user must be allowed on a row to pick it (``CHANGE``); every other restrictable field
    offers what the user may see.
    """

    team_fields: tuple[str, ...] = ("team",)
    choice_actions: dict[str, str] = {}

    def related_choices(self, user, name: str, queryset: QuerySet) -> QuerySet:
        if name in self.team_fields:
            return editor_teams(user)
        if name in self.choice_actions:
            return queryset.restrict(user, self.choice_actions[name])
        if hasattr(queryset, "restrict"):
            return queryset.restrict(user, VIEW)
        return queryset
