from __future__ import annotations

from rest_framework.permissions import SAFE_METHODS, BasePermission

from meshadmin.models import APIToken, Membership, Team
from meshadmin.querysets import CHANGE, DELETE


class TokenScopePermission(BasePermission):
    """Signed in, and a read-only token may only read. What a user may touch is decided by the
    restricted querysets, not here."""

    message = "This token is read-only."

    def has_permission(self, request, view) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False
        if isinstance(request.auth, APIToken) and request.auth.read_only:
            return request.method in SAFE_METHODS
        return True


def not_a_member(user, team: Team, doing: str, *, owners_only: bool = False) -> str:
    """Why ``user``, who sees ``team``, may not do ``doing`` ("change its topics"): their role.

    The API answers 403 with it for what the user can see but not change (what they cannot see
    stays 404, as on the pages)."""
    role = Membership.objects.filter(team=team, user=user).values_list("role", flat=True).first()
    who = f"You are not a member of team {team}" if role is None else f"You are a {role} of team {team}"
    holders = "owners" if owners_only else "owners and members"
    return f"{who}: only its {holders} {doing}."


def why_not(user, obj, action: str) -> str:
    """The 403 message for a visible ``obj`` that ``user`` may not change or delete."""
    verb = {CHANGE: "change", DELETE: "delete"}.get(action, action)
    meta = obj._meta
    team = getattr(obj, "owning_team", None)
    if team is None:
        return f"Only staff {verb} {meta.verbose_name_plural}."
    if isinstance(obj, Team):
        return not_a_member(user, team, f"{verb} the team", owners_only=True)
    if isinstance(obj, Membership):
        return not_a_member(user, team, f"{verb} its memberships", owners_only=True)
    return not_a_member(user, team, f"{verb} its {meta.verbose_name_plural}")
