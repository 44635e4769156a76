"""Permission enforcement by restricting querysets (NetBox's utilities/querysets.py).

Pages, bulk actions, the API and websockets all ask ``Model.objects.restrict(user, action)``;
whatever a user may not see is simply absent, so every path answers 404 for it.
"""

from __future__ import annotations

from django.db import models

VIEW, CHANGE, DELETE = "view", "change", "delete"
ACTIONS = (VIEW, CHANGE, DELETE)

#: A team's roles (``Membership.role``): owners also manage the team and its memberships,
#: members change what the team owns, viewers only look.
OWNER, MEMBER, VIEWER = "owner", "member", "viewer"
EDITOR_ROLES = (OWNER, MEMBER)


class RestrictedQuerySet(models.QuerySet):
    #: Everyone signed in may see every row (the catalog); otherwise only what ``scope`` allows.
    visible_to_all: bool = False

    def restrict(self, user, action: str = VIEW) -> RestrictedQuerySet:
        if action not in ACTIONS:
            raise ValueError(f"unknown action {action!r}")
        if user is None or not user.is_authenticated or not user.is_active:
            return self.none()
        if user.is_superuser or user.is_staff:
            return self
        if action == VIEW and self.visible_to_all:
            return self
        return self.scope(user, action)

    def scope(self, user, action: str) -> RestrictedQuerySet:
        """Rows a non-staff user may act on; models override. Default: none (staff only)."""
        return self.none()


def may_create(model, user) -> bool:
    """Whether ``user`` may create ``model`` objects: the model's ``can_create`` or, without one, staff."""
    can_create = getattr(model, "can_create", None)
    return can_create(user) if can_create is not None else bool(user.is_staff)


def team_ids(user, roles: tuple[str, ...] | None = None):
    """A subquery of the ids of the user's teams, optionally only those where they hold ``roles``.

    Through the user's ``memberships`` relation: this module sits below the models that use it.
    """
    memberships = user.memberships.all()
    if roles is not None:
        memberships = memberships.filter(role__in=roles)
    return memberships.values("team_id")


class TeamOwnedQuerySet(RestrictedQuerySet):
    """Rows owned by a team: owners and members change them, viewers only look."""

    team_field = "team"

    def scope(self, user, action: str) -> RestrictedQuerySet:
        roles = None if action == VIEW else EDITOR_ROLES
        return self.filter(**{f"{self.team_field}__in": team_ids(user, roles)})


class CatalogQuerySet(TeamOwnedQuerySet):
    """Team-owned rows that every signed-in user may browse."""

    visible_to_all = True
