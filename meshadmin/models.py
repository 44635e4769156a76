from __future__ import annotations

import hashlib
import hmac
import secrets

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.urls import reverse
from django.utils import timezone

from . import querysets
from .querysets import CHANGE, VIEW, RestrictedQuerySet, team_ids


class TeamOwned:
    """A model owned by the team in its ``team`` field: the team's owners and members create and
    change it; its pages live at ``<app_label>:<model_name>``. Mix in before ``models.Model``."""

    @property
    def owning_team(self) -> Team:
        return self.team

    @staticmethod
    def can_create(user) -> bool:
        return user.is_staff or Membership.objects.filter(user=user, role__in=Membership.EDITOR_ROLES).exists()

    def get_absolute_url(self) -> str:
        return reverse(f"{self._meta.app_label}:{self._meta.model_name}", args=[self.pk])


class TeamQuerySet(RestrictedQuerySet):
    visible_to_all = True

    def scope(self, user, action: str):
        # Only a team's owners change the team (and its memberships).
        return self.filter(pk__in=team_ids(user, (Membership.OWNER,)))


class Team(models.Model):
    name = models.CharField(max_length=100, unique=True)
    slug = models.SlugField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    objects = TeamQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("meshadmin:team", args=[self.pk])

    @property
    def owning_team(self) -> Team:
        return self

    @staticmethod
    def can_create(user) -> bool:
        return user.is_authenticated and user.is_active

    def add_creator(self, user) -> None:
        """Whoever creates a team owns it (staff manage every team anyway)."""
        if not user.is_staff:
            Membership.objects.get_or_create(team=self, user=user, defaults={"role": Membership.OWNER})


class MembershipQuerySet(RestrictedQuerySet):
    def scope(self, user, action: str):
        if action == VIEW:
            return self.filter(team__in=team_ids(user))
        return self.filter(team__in=team_ids(user, (Membership.OWNER,)))


class Membership(models.Model):
    OWNER, MEMBER, VIEWER = querysets.OWNER, querysets.MEMBER, querysets.VIEWER
    ROLE_CHOICES = [(OWNER, "Owner"), (MEMBER, "Member"), (VIEWER, "Viewer")]
    EDITOR_ROLES = querysets.EDITOR_ROLES

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=ROLE_CHOICES, default=MEMBER)
    created = models.DateTimeField(auto_now_add=True)

    objects = MembershipQuerySet.as_manager()

    class Meta:
        ordering = ["team__name", "user__username"]
        constraints = [models.UniqueConstraint(fields=["team", "user"], name="one_membership_per_team")]

    def __str__(self) -> str:
        return f"{self.user} in {self.team} ({self.role})"

    def get_absolute_url(self) -> str:
        return reverse("meshadmin:membership", args=[self.pk])

    @property
    def owning_team(self) -> Team:
        return self.team

    @staticmethod
    def can_create(user) -> bool:
        return user.is_staff or Membership.objects.filter(user=user, role=Membership.OWNER).exists()


class AuditEntryQuerySet(RestrictedQuerySet):
    def scope(self, user, action: str):
        if action != VIEW:
            return self.none()  # the log is append-only for everyone but staff
        return self.filter(team__in=team_ids(user))


class AuditEntry(models.Model):
    """One create, update or delete of a governed object, written by the signal receivers in
    ``meshadmin.audit`` whatever the path (page, API, admin, bulk action, queryset update, shell);
    and every sign-in, failed sign-in and export of secrets."""

    CREATE, UPDATE, DELETE = "create", "update", "delete"
    LOGIN, LOGIN_FAILED, EXPORT = "login", "login_failed", "export"
    ACTION_CHOICES = [(CREATE, "Created"), (UPDATE, "Updated"), (DELETE, "Deleted"), (LOGIN, "Signed in"),
                      (LOGIN_FAILED, "Failed to sign in"), (EXPORT, "Exported with secrets")]

    time = models.DateTimeField(default=timezone.now, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_name = models.CharField(max_length=150, blank=True)  # kept when the user is deleted
    request_id = models.UUIDField(null=True, blank=True, db_index=True)
    action = models.CharField(max_length=20, choices=ACTION_CHOICES)
    object_type = models.ForeignKey("contenttypes.ContentType", on_delete=models.PROTECT, related_name="+")
    object_id = models.CharField(max_length=64, db_index=True)
    object_repr = models.CharField(max_length=250)
    # No database constraint: the entry that records a team's deletion (or a cascade from it)
    # still names the team, and the log outlives what it describes.
    team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.DO_NOTHING, db_constraint=False,
                             related_name="+")
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)

    objects = AuditEntryQuerySet.as_manager()

    class Meta:
        ordering = ["-time", "-pk"]
        verbose_name_plural = "audit entries"
        indexes = [models.Index(fields=["object_type", "object_id", "-time"])]

    def __str__(self) -> str:
        return f"{self.get_action_display()} {self.object_repr}"

    def get_absolute_url(self) -> str:
        return reverse("meshadmin:auditentry", args=[self.pk])

    @property
    def owning_team(self):
        return self.team

    def changes(self) -> list[tuple[str, object, object]]:
        """(field, before, after) for every field whose value differs."""
        before, after = self.before or {}, self.after or {}
        return [
            (field, before.get(field), after.get(field))
            for field in sorted(set(before) | set(after))
            if before.get(field) != after.get(field)
        ]


def _token_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class APITokenQuerySet(RestrictedQuerySet):
    def scope(self, user, action: str):
        return self.filter(user=user)

    def restrict(self, user, action: str = VIEW):
        # Tokens are personal: staff see only their own too.
        if user is None or not user.is_authenticated:
            return self.none()
        return self.filter(user=user)


class APIToken(models.Model):
    """A personal token for automation. The key is shown once; only a lookup prefix and a
    SHA-256 digest are stored (random 256-bit keys need no slow hash)."""

    PREFIX_LENGTH = 8

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    description = models.CharField(max_length=200, blank=True)
    prefix = models.CharField(
        max_length=PREFIX_LENGTH, unique=True, editable=False,
        validators=[RegexValidator(r"^[A-Za-z0-9]+$")],
    )
    digest = models.CharField(max_length=64, editable=False)
    read_only = models.BooleanField(default=False, help_text="Only safe methods (GET, HEAD, OPTIONS).")
    expires = models.DateTimeField(null=True, blank=True, help_text="Leave empty for no expiry.")
    created = models.DateTimeField(auto_now_add=True)
    last_used = models.DateTimeField(null=True, blank=True)

    objects = APITokenQuerySet.as_manager()

    class Meta:
        ordering = ["-created"]
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.description or 'no description'})"

    def get_absolute_url(self) -> str:
        return reverse("meshadmin:apitoken_list")

    @property
    def owning_team(self):
        return None

    def clean(self) -> None:
        if self.expires is not None and self._state.adding and self.expires <= timezone.now():
            raise ValidationError({"expires": "A new token must expire in the future (or leave it empty)."})

    @property
    def is_expired(self) -> bool:
        return self.expires is not None and self.expires <= timezone.now()

    def generate(self) -> str:
        """Give the token a new random key and return it; the caller shows it once."""
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
        self.prefix = "".join(secrets.choice(alphabet) for _ in range(self.PREFIX_LENGTH))
        key = f"mat_{self.prefix}_{secrets.token_urlsafe(32)}"
        self.digest = _token_digest(key)
        return key

    @classmethod
    def authenticate(cls, key: str) -> APIToken | None:
        parts = key.split("_")
        if len(parts) < 3 or parts[0] != "mat":
            return None
        token = cls.objects.select_related("user").filter(prefix=parts[1]).first()
        if token is None or not hmac.compare_digest(token.digest, _token_digest(key)):
            return None
        return token


__all__ = ["APIToken", "AuditEntry", "CHANGE", "Membership", "Team", "TeamOwned"]
