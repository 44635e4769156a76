"""Subscriptions: an application's standing request to receive a topic's events by webhook.

The workflow lives here, so that pages and the API share it::

    requested ──approve──► active ◄──resume── paused
        │                    │ └────pause────►  │
        └──reject──► rejected └──revoke──► revoked ◄──revoke──┘

Who may do what (``Subscription.sides``): the editors (owners and members) of the
application's team are its *application side*, those of the topic's team its *topic side*;
staff are both. The application side requests; the topic side approves or rejects; either
side pauses, resumes and revokes. Anything else raises :class:`TransitionRefused` with a
message for people: :class:`NotPermitted` (HTTP 403) for the wrong side,
:class:`IllegalTransition` (HTTP 409) for the wrong state.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.urls import reverse

from meshadmin.querysets import VIEW, RestrictedQuerySet, team_ids
from meshadmin.workflow import (  # noqa: F401 - re-exported: the subscription workflow's names
    IllegalTransition,
    NotPermitted,
    Reviewed,
    Transition,
    TransitionRefused,
)
from meshruntime.filters import FilterError, validate_filters

APPLICATION_SIDE, TOPIC_SIDE = "application", "topic"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*")


def validate_webhook_url(value: str) -> None:
    """An http or https URL with a host, and without credentials.

    Unlike Django's URLValidator, a host without a dot (``http://billing:8080/hooks``, a
    service name inside a cluster) is accepted: webhooks are mostly internal. Credentials are
    refused because the URL is shown on pages and kept in the audit log; deliveries are signed
    with the subscription's secret instead.
    """
    if any(c.isspace() for c in value):
        raise ValidationError("A webhook URL contains no spaces.")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:
        raise ValidationError(f"Not a valid URL: {exc}.") from None
    if parts.scheme not in ("http", "https"):
        raise ValidationError("A webhook URL starts with http:// or https://.")
    if parts.username is not None or parts.password is not None:
        raise ValidationError(
            "Put no credentials in a webhook URL: it is shown on pages and kept in the audit log. "
            "Verify deliveries with the subscription's signing secret instead."
        )
    host = parts.hostname or ""
    if not host:
        raise ValidationError("A webhook URL names a host, like https://billing.internal/hooks.")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not _HOSTNAME.fullmatch(host):
            raise ValidationError(f"{host!r} is not a valid host name.") from None
    if port == 0:
        raise ValidationError("Port 0 is not a valid port.")


class SubscriptionQuerySet(RestrictedQuerySet):
    """Both teams see a subscription; only the application's team changes or deletes it.

    Delivery settings (URL, filters, retries) belong to the subscriber, so ``change`` and
    ``delete`` are for the application team's editors. The workflow steps that the topic's
    team takes (approve, reject, pause, resume, revoke) are checked by ``Subscription.sides``.
    """

    def scope(self, user, action: str):
        from meshadmin.models import Membership

        if action == VIEW:
            teams = team_ids(user)
            return self.filter(Q(application__team__in=teams) | Q(topic__team__in=teams))
        return self.filter(application__team__in=team_ids(user, Membership.EDITOR_ROLES))

    def awaiting_review_by(self, user) -> SubscriptionQuerySet:
        """Requests this user may approve or reject: to topics of teams they edit (all for staff)."""
        from meshadmin.models import Membership

        requested = self.filter(state=Subscription.REQUESTED)
        if user.is_staff or user.is_superuser:
            return requested
        return requested.filter(topic__team__in=team_ids(user, Membership.EDITOR_ROLES))


def new_signing_secret() -> str:
    return f"whsec_{secrets.token_urlsafe(32)}"


class Subscription(Reviewed, models.Model):
    REQUESTED, ACTIVE, PAUSED, REVOKED, REJECTED = "requested", "active", "paused", "revoked", "rejected"
    STATE_CHOICES = [(REQUESTED, "Requested"), (ACTIVE, "Active"), (PAUSED, "Paused"),
                     (REVOKED, "Revoked"), (REJECTED, "Rejected")]
    #: States in which the subscription is part of the mesh configuration.
    LIVE_STATES = (ACTIVE, PAUSED)
    #: States that count for "one open subscription per topic and application".
    OPEN_STATES = (REQUESTED, ACTIVE, PAUSED)
    BINARY, STRUCTURED = "binary", "structured"
    MODE_CHOICES = [(BINARY, "CloudEvents binary mode"), (STRUCTURED, "CloudEvents structured mode")]

    EITHER_SIDE = frozenset({APPLICATION_SIDE, TOPIC_SIDE})
    TRANSITIONS = {t.name: t for t in (
        Transition("approve", "approved", (REQUESTED,), ACTIVE, frozenset({TOPIC_SIDE})),
        Transition("reject", "rejected", (REQUESTED,), REJECTED, frozenset({TOPIC_SIDE})),
        Transition("pause", "paused", (ACTIVE,), PAUSED, EITHER_SIDE),
        Transition("resume", "resumed", (PAUSED,), ACTIVE, EITHER_SIDE),
        Transition("revoke", "revoked", (ACTIVE, PAUSED), REVOKED, EITHER_SIDE),
    )}

    topic = models.ForeignKey("topics.Topic", on_delete=models.PROTECT, related_name="subscriptions")
    application = models.ForeignKey("governance.Application", on_delete=models.PROTECT,
                                    related_name="subscriptions")
    state = models.CharField(max_length=10, choices=STATE_CHOICES, default=REQUESTED, editable=False,
                             db_index=True)  # the inbox counts requests on every page
    webhook_url = models.CharField(
        max_length=500, validators=[validate_webhook_url],
        help_text="Where the runtime POSTs each event (http or https).",
    )
    delivery_mode = models.CharField(max_length=10, choices=MODE_CHOICES, default=BINARY)
    timeout_ms = models.PositiveIntegerField(default=5000, validators=[MinValueValidator(100),
                                                                       MaxValueValidator(120_000)])
    max_attempts = models.PositiveIntegerField(default=8, validators=[MinValueValidator(1), MaxValueValidator(100)])
    backoff_base_ms = models.PositiveIntegerField(default=200, validators=[MinValueValidator(10),
                                                                          MaxValueValidator(600_000)])
    backoff_cap_ms = models.PositiveIntegerField(default=60_000, validators=[MinValueValidator(10),
                                                                             MaxValueValidator(3_600_000)])
    max_in_flight = models.PositiveIntegerField(default=16, validators=[MinValueValidator(1),
                                                                        MaxValueValidator(1024)],
                                                help_text="1 delivers in order, one at a time.")
    filters = models.JSONField(default=list, blank=True,
                               help_text="CloudEvents subscription filters; empty receives every event.")
    signing_secret = models.CharField(max_length=100, default=new_signing_secret, editable=False)
    reviewer_comment = models.TextField(blank=True)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                     related_name="+", editable=False)
    reviewed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="+", editable=False)
    reviewed_at = models.DateTimeField(null=True, blank=True, editable=False)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    objects = SubscriptionQuerySet.as_manager()

    class Meta:
        ordering = ["-created"]
        constraints = [
            models.UniqueConstraint(
                fields=["topic", "application"], condition=Q(state__in=["requested", "active", "paused"]),
                name="one_open_subscription_per_topic_and_application",
                violation_error_message="This application already has an open subscription to this topic.",
            )
        ]

    def __str__(self) -> str:
        return f"{self.application} ← {self.topic}"

    def get_absolute_url(self) -> str:
        return reverse("subscriptions:subscription", args=[self.pk])

    @property
    def owning_team(self):
        return self.application.team

    @property
    def subscription_id(self) -> str:
        return f"sub-{self.pk}"

    @staticmethod
    def can_create(user) -> bool:
        """Editors of any team may request (the form offers only their teams' applications)."""
        from meshadmin.models import Membership

        return user.is_staff or Membership.objects.filter(user=user, role__in=Membership.EDITOR_ROLES).exists()

    def clean(self) -> None:
        errors: dict[str, str] = {}
        try:
            validate_filters(self.filters)
        except FilterError as exc:
            errors["filters"] = f"{exc.path}: {exc.problem}."
        if self.backoff_cap_ms is not None and self.backoff_base_ms is not None \
                and self.backoff_cap_ms < self.backoff_base_ms:
            errors["backoff_cap_ms"] = "The backoff cap must be at least the backoff base."
        # The database constraint names ``state``, which forms exclude from validation; say it here.
        if self.state in self.OPEN_STATES and self.topic_id and self.application_id:
            others = Subscription.objects.filter(topic_id=self.topic_id, application_id=self.application_id,
                                                 state__in=self.OPEN_STATES).exclude(pk=self.pk)
            if others.exists():
                errors["topic"] = (f"{self.application} already has an open subscription to {self.topic}: "
                                   "change that one, or revoke it first.")
        if errors:
            raise ValidationError(errors)

    # Workflow

    def sides(self, user) -> frozenset[str]:
        """The sides ``user`` acts for: editors of the application's and of the topic's team."""
        from meshadmin.models import Membership

        if not user.is_authenticated or not user.is_active:
            return frozenset()
        if user.is_staff or user.is_superuser:
            return self.EITHER_SIDE
        teams = set(Membership.objects.filter(
            user=user, role__in=Membership.EDITOR_ROLES,
            team_id__in=[self.application.team_id, self.topic.team_id],
        ).values_list("team_id", flat=True))
        sides = set()
        if self.application.team_id in teams:
            sides.add(APPLICATION_SIDE)
        if self.topic.team_id in teams:
            sides.add(TOPIC_SIDE)
        return frozenset(sides)

    def side_names(self, transition: Transition) -> str:
        teams = []
        if TOPIC_SIDE in transition.sides:
            teams.append(f"{self.topic.team} (the topic's team)")
        if APPLICATION_SIDE in transition.sides and self.application.team_id != self.topic.team_id:
            teams.insert(0, f"{self.application.team} (the application's team)")
        return " or ".join(teams)

    def approve(self, *, by, comment: str = "") -> None:
        self.transition("approve", by=by, comment=comment)

    def reject(self, *, by, comment: str) -> None:
        self.transition("reject", by=by, comment=comment)

    def pause(self, *, by) -> None:
        self.transition("pause", by=by)

    def resume(self, *, by) -> None:
        self.transition("resume", by=by)

    def revoke(self, *, by) -> None:
        self.transition("revoke", by=by)
