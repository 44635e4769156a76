from rest_framework.permissions import SAFE_METHODS, BasePermission

from meshadmin.models import APIToken


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
