"""Applications (the identities that publish and subscribe), their keys, access and routing rules."""

from __future__ import annotations

import hashlib
import secrets

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.urls import reverse
from django.utils import timezone

from meshadmin.models import Team, TeamOwned
from meshadmin.querysets import CatalogQuerySet, TeamOwnedQuerySet
from meshruntime.policy import PolicyError, validate_pattern

application_name_validator = RegexValidator(
    r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$",
    "An application name is lowercase letters, digits and '-', starting and ending with a letter or digit.",
)


def validate_topic_pattern(value: str) -> None:
    try:
        validate_pattern(value)
    except PolicyError as exc:
        message = str(exc)
        raise ValidationError(message[0].upper() + message[1:] + ".") from None


class Application(TeamOwned, models.Model):
    """The identity that publishes and subscribes through a mesh runtime."""

    name = models.CharField(max_length=100, unique=True, validators=[application_name_validator])
    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="applications")
    description = models.TextField(blank=True)
    contact = models.CharField(max_length=200, blank=True, help_text="Who to call: an e-mail address or a URL.")
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    objects = CatalogQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ApplicationKeyQuerySet(TeamOwnedQuerySet):
    team_field = "application__team"


class ApplicationKey(models.Model):
    """A key an application presents to its runtime. Shown once; the mesh stores only the lookup
    prefix and a SHA-256 digest (random 240-bit secrets need no slow hash)."""

    PREFIX_LENGTH = 8
    _ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

    application = models.ForeignKey(Application, on_delete=models.CASCADE, related_name="keys")
    description = models.CharField(max_length=200, blank=True)
    prefix = models.CharField(max_length=PREFIX_LENGTH, unique=True, editable=False)
    sha256 = models.CharField(max_length=64, editable=False)
    expires = models.DateTimeField(null=True, blank=True, help_text="Leave empty for a key that does not expire.")
    revoked = models.DateTimeField(null=True, blank=True, editable=False)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+", editable=False)
    created = models.DateTimeField(auto_now_add=True)

    objects = ApplicationKeyQuerySet.as_manager()

    class Meta:
        ordering = ["application__name", "-created"]
        verbose_name = "application key"

    def __str__(self) -> str:
        return f"{self.application.name} {self.prefix}…"

    def get_absolute_url(self) -> str:
        return reverse("governance:application", args=[self.application_id])

    @property
    def owning_team(self) -> Team:
        return self.application.team

    @property
    def is_active(self) -> bool:
        return self.revoked is None and (self.expires is None or self.expires > timezone.now())

    def generate(self) -> str:
        """Give the key new random material and return the plain key; the caller shows it once."""
        self.prefix = "".join(secrets.choice(self._ALPHABET) for _ in range(self.PREFIX_LENGTH))
        secret = secrets.token_urlsafe(30)  # 40 url-safe characters
        key = f"mk_{self.prefix}_{secret}"
        self.sha256 = hashlib.sha256(key.encode()).hexdigest()
        return key

    def revoke(self) -> None:
        if self.revoked is None:
            self.revoked = timezone.now()
            self.save(update_fields=["revoked"])


class AccessRule(TeamOwned, models.Model):
    """Who may publish or subscribe to which topics. Default deny; deny beats allow."""

    APPLICATION, TEAM, EVERYONE = "application", "team", "everyone"
    PRINCIPAL_CHOICES = [(APPLICATION, "An application"), (TEAM, "A team's applications"), (EVERYONE, "Everyone")]
    ALLOW, DENY = "allow", "deny"
    EFFECT_CHOICES = [(ALLOW, "Allow"), (DENY, "Deny")]

    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="access_rules",
                             help_text="The team that manages this rule.")
    principal_kind = models.CharField(max_length=12, choices=PRINCIPAL_CHOICES, default=APPLICATION)
    principal_application = models.ForeignKey(Application, null=True, blank=True, on_delete=models.CASCADE,
                                              related_name="access_rules")
    principal_team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    topic_pattern = models.CharField(max_length=250, validators=[validate_topic_pattern],
                                     help_text="An exact topic name, a prefix such as orders.*, or *.")
    publish = models.BooleanField(default=False)
    subscribe = models.BooleanField(default=False)
    effect = models.CharField(max_length=5, choices=EFFECT_CHOICES, default=ALLOW)
    description = models.CharField(max_length=250, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    objects = CatalogQuerySet.as_manager()

    class Meta:
        ordering = ["topic_pattern", "pk"]
        verbose_name = "access rule"

    def __str__(self) -> str:
        return f"{self.effect} {self.principal_display} {'/'.join(self.actions) or '—'} {self.topic_pattern}"

    @property
    def rule_id(self) -> str:
        return f"rule-{self.pk}"

    @property
    def actions(self) -> list[str]:
        return [action for action in ("publish", "subscribe") if getattr(self, action)]

    @property
    def principal_display(self) -> str:
        if self.principal_kind == self.EVERYONE:
            return "everyone"
        if self.principal_kind == self.TEAM:
            return f"team {self.principal_team}" if self.principal_team_id else "team ?"
        return str(self.principal_application) if self.principal_application_id else "application ?"

    def clean(self) -> None:
        errors = {}
        if not (self.publish or self.subscribe):
            errors["publish"] = "Choose at least one action: publish or subscribe."
        if self.principal_kind == self.APPLICATION and not self.principal_application_id:
            errors["principal_application"] = "Choose the application this rule applies to."
        if self.principal_kind == self.TEAM and not self.principal_team_id:
            errors["principal_team"] = "Choose the team whose applications this rule applies to."
        if self.principal_kind != self.APPLICATION and self.principal_application_id:
            errors["principal_application"] = f"A rule for {self.principal_kind} names no application."
        if self.principal_kind != self.TEAM and self.principal_team_id:
            errors["principal_team"] = f"A rule for {self.principal_kind} names no team."
        if errors:
            raise ValidationError(errors)


class RoutingRule(TeamOwned, models.Model):
    """Copies events published to matching topics onto target topics."""

    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="routing_rules",
                             help_text="The team that manages this rule.")
    source_pattern = models.CharField(max_length=250, validators=[validate_topic_pattern],
                                      help_text="An exact topic name, a prefix such as orders.*, or *.")
    filters = models.JSONField(default=list, blank=True,
                               help_text="CloudEvents subscription filters; empty copies every event.")
    targets = models.ManyToManyField("topics.Topic", related_name="routed_from")
    enabled = models.BooleanField(default=True)
    order = models.PositiveIntegerField(default=100, help_text="Rules apply in ascending order.")
    description = models.CharField(max_length=250, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    objects = CatalogQuerySet.as_manager()

    class Meta:
        ordering = ["order", "pk"]
        verbose_name = "routing rule"

    def __str__(self) -> str:
        return f"route-{self.pk}: {self.source_pattern}" if self.pk else f"route: {self.source_pattern}"

    @property
    def rule_id(self) -> str:
        return f"route-{self.pk}"
