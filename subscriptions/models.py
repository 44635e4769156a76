"""Subscriptions: an application's standing request to receive a topic's events by webhook."""

from __future__ import annotations

import secrets

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator, URLValidator
from django.db import models
from django.db.models import Q
from django.urls import reverse

from meshadmin.querysets import RestrictedQuerySet, team_ids


class SubscriptionQuerySet(RestrictedQuerySet):
    """Visible to, and acted on by, the subscribing application's team and the topic's team."""

    def scope(self, user, action: str):
        from meshadmin.models import Membership

        roles = None if action == "view" else Membership.EDITOR_ROLES
        teams = team_ids(user, roles)
        return self.filter(Q(application__team__in=teams) | Q(topic__team__in=teams))


def new_signing_secret() -> str:
    return f"whsec_{secrets.token_urlsafe(32)}"


class Subscription(models.Model):
    REQUESTED, ACTIVE, PAUSED, REVOKED, REJECTED = "requested", "active", "paused", "revoked", "rejected"
    STATE_CHOICES = [(REQUESTED, "Requested"), (ACTIVE, "Active"), (PAUSED, "Paused"),
                     (REVOKED, "Revoked"), (REJECTED, "Rejected")]
    #: States in which the subscription is part of the mesh configuration.
    LIVE_STATES = (ACTIVE, PAUSED)
    BINARY, STRUCTURED = "binary", "structured"
    MODE_CHOICES = [(BINARY, "CloudEvents binary mode"), (STRUCTURED, "CloudEvents structured mode")]

    topic = models.ForeignKey("topics.Topic", on_delete=models.PROTECT, related_name="subscriptions")
    application = models.ForeignKey("governance.Application", on_delete=models.PROTECT,
                                    related_name="subscriptions")
    state = models.CharField(max_length=10, choices=STATE_CHOICES, default=REQUESTED, editable=False)
    webhook_url = models.CharField(
        max_length=500, validators=[URLValidator(schemes=["http", "https"])],
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
