"""Subscriptions: an application's standing request to receive a topic's events by webhook.

The workflow lives here, so that pages and the API share it::

    requested ──approve──► active ◄──resume── paused
        │                    │ └────pause────►  │
        └──reject──► rejected └──revoke──► revoked ◄──revoke──┘

Changing what an approved (active or paused) subscription delivers, or where (its webhook URL
or MQTT target, filters, delivery mode, and whether it answers the topic's requests:
``REVIEWED_FIELDS``), needs the topic side's approval again: the edit becomes a
:class:`SubscriptionChange`, the approved settings keep delivering, and approving the change
writes it onto the subscription in one save, so the next configuration switches at once.

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
from django.db import models, transaction
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


def validate_mqtt_topic(value: str) -> None:
    """A topic to publish to: no wildcards, no empty level at the ends, no spaces."""
    if not value:
        return
    if "+" in value or "#" in value:
        raise ValidationError("An MQTT topic to publish to has no wildcards (+ or #).")
    if any(c.isspace() for c in value) or "\x00" in value:
        raise ValidationError("An MQTT topic here contains no spaces.")
    if value.startswith("/") or value.endswith("/") or "//" in value:
        raise ValidationError("An MQTT topic here has no empty level (no leading, trailing or double '/').")


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

    def with_pending_change(self) -> SubscriptionQuerySet:
        """Prefetch each subscription's pending change: one query for a whole list."""
        return self.prefetch_related(models.Prefetch(
            "changes", queryset=SubscriptionChange.objects.filter(state=SubscriptionChange.REQUESTED),
            to_attr="requested_changes"))

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
        max_length=500, validators=[validate_webhook_url], blank=True,
        help_text="Where the runtime POSTs each event (http or https); empty for an MQTT target.",
    )
    # ... or an MQTT topic of a broker in the catalog: devices subscribe there (docs/stores.md)
    mqtt_store = models.ForeignKey(
        "topics.EventStore", null=True, blank=True, on_delete=models.PROTECT, related_name="mqtt_subscriptions",
        limit_choices_to={"kind": "mqtt"}, verbose_name="MQTT store",
        help_text="Instead of a webhook: the MQTT broker the runtime publishes each event to.")
    mqtt_topic = models.CharField(
        max_length=500, blank=True, validators=[validate_mqtt_topic], verbose_name="MQTT topic",
        help_text="The topic in that broker, as devices name it (devices/alerts); structured mode, QoS 1.")
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
    responder = models.BooleanField(
        default=False,
        help_text="Its webhook answers requests on the topic: the body of a 2xx answer is the reply that "
                  "an Apache EventMesh client's request (code 101) receives. At most one per topic.",
    )
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
            ),
            models.UniqueConstraint(
                fields=["topic"], condition=Q(responder=True, state__in=["requested", "active", "paused"]),
                name="one_responder_per_topic",
                violation_error_message="This topic already has a responder.",
            ),
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

    @property
    def target_url(self) -> str:
        """Where its events go, as the configuration says: the webhook, or ``mqtt://<store>/<topic>``."""
        if self.mqtt_store_id:
            return f"mqtt://{self.mqtt_store.name}/{self.mqtt_topic}"
        return self.webhook_url

    def clean(self) -> None:
        errors: dict[str, str] = {}
        self._clean_target(errors)
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
        if self.responder and self.state in self.OPEN_STATES and self.topic_id:
            # as the runtime's config validation: at most one responder per topic
            other = (Subscription.objects.filter(topic_id=self.topic_id, responder=True, state__in=self.OPEN_STATES)
                     .exclude(pk=self.pk).select_related("application").first())
            if other is not None:
                errors["responder"] = (f"{self.topic} already has a responder: {other.subscription_id} of "
                                       f"{other.application}. A topic has at most one.")
        if errors:
            raise ValidationError(errors)

    def _clean_target(self, errors: dict[str, str]) -> None:
        """A webhook or an MQTT topic, not both; an MQTT target in structured mode, not a responder."""
        mqtt = bool(self.mqtt_store_id or self.mqtt_topic)
        if mqtt and self.webhook_url:
            errors["webhook_url"] = "Give a webhook URL or an MQTT store and topic, not both."
        elif not mqtt and not self.webhook_url:
            errors["webhook_url"] = "Give the webhook URL the runtime POSTs to (or an MQTT store and topic)."
        elif mqtt:
            if not self.mqtt_store_id:
                errors["mqtt_store"] = "Choose the MQTT store whose broker gets the events."
            elif self.mqtt_store.kind != "mqtt":
                errors["mqtt_store"] = f"{self.mqtt_store} is not an MQTT broker."
            if not self.mqtt_topic:
                errors["mqtt_topic"] = "Name the MQTT topic to publish to, like devices/alerts."
            if self.delivery_mode != self.STRUCTURED:
                errors["delivery_mode"] = ("An MQTT target takes structured mode: MQTT carries no headers for the "
                                           "event's attributes.")
            if self.responder:
                errors["responder"] = "An MQTT target cannot answer requests: a responder has a webhook."

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

    # Changes to an approved subscription

    def pending_change(self) -> SubscriptionChange | None:
        """The change that awaits approval (from ``with_pending_change()``'s prefetch if it ran)."""
        if hasattr(self, "requested_changes"):
            return self.requested_changes[0] if self.requested_changes else None
        return self.changes.filter(state=SubscriptionChange.REQUESTED).first()

    def save_edit(self, by) -> SubscriptionChange | None:
        """Save an edit of this (existing) subscription by ``by``; return the change request it
        became, if it did.

        What changes what is delivered where (``REVIEWED_FIELDS``) of a live subscription needs
        the topic side: when ``by`` is not on it, those fields keep their approved values, and
        their new values become (or replace) the pending :class:`SubscriptionChange`. Everything
        else (timeouts, retries, in-flight limit) is saved at once, as it always was.
        """
        with transaction.atomic():
            stored = Subscription.objects.select_for_update().get(pk=self.pk)
            proposed = {name: getattr(self, name) for name in REVIEWED_FIELDS}
            approved = {name: getattr(stored, name) for name in REVIEWED_FIELDS}
            if stored.state not in self.LIVE_STATES or proposed == approved or TOPIC_SIDE in self.sides(by):
                self.save()
                return None
            for name, value in approved.items():
                setattr(self, name, value)
            self.save()
            change = self.pending_change() or SubscriptionChange(subscription=self)
            change.before, change.after, change.requested_by = approved, proposed, by
            change.save()
            return change

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


#: What an approved subscription delivers, and where: changing these needs the topic side again.
#: ``responder`` too: a responder's answers become the replies the topic's requesters receive.
REVIEWED_FIELDS = ("webhook_url", "mqtt_store_id", "mqtt_topic", "delivery_mode", "filters", "responder")
FIELD_LABELS = {"webhook_url": "Webhook URL", "mqtt_store_id": "MQTT store (id)", "mqtt_topic": "MQTT topic",
                "delivery_mode": "Delivery mode", "filters": "Filters", "responder": "Responder of the topic"}


class SubscriptionChangeQuerySet(RestrictedQuerySet):
    """Both teams see a change; only the application's team withdraws it (by its step)."""

    def scope(self, user, action: str):
        from meshadmin.models import Membership

        if action == VIEW:
            teams = team_ids(user)
            return self.filter(Q(subscription__application__team__in=teams) | Q(subscription__topic__team__in=teams))
        return self.filter(subscription__application__team__in=team_ids(user, Membership.EDITOR_ROLES))

    def awaiting_review_by(self, user) -> SubscriptionChangeQuerySet:
        """Changes this user may approve or reject: to subscriptions of topics of teams they edit."""
        from meshadmin.models import Membership

        requested = self.filter(state=SubscriptionChange.REQUESTED)
        if user.is_staff or user.is_superuser:
            return requested
        return requested.filter(subscription__topic__team__in=team_ids(user, Membership.EDITOR_ROLES))


class SubscriptionChange(Reviewed, models.Model):
    """A requested change of what an approved subscription delivers, or where.

    ``before`` holds the approved values when it was asked, ``after`` the requested ones (both
    for ``REVIEWED_FIELDS`` only). Requested, then approved or rejected by the topic side, or
    withdrawn by the application side. Approving writes ``after`` onto the subscription in the
    same transaction, so the configuration switches from one version to the next; until then,
    and after a rejection, the approved settings keep delivering.
    """

    REQUESTED, APPROVED, REJECTED, WITHDRAWN = "requested", "approved", "rejected", "withdrawn"
    STATE_CHOICES = [(REQUESTED, "Requested"), (APPROVED, "Approved"), (REJECTED, "Rejected"),
                     (WITHDRAWN, "Withdrawn")]
    TRANSITIONS = {t.name: t for t in (
        Transition("approve", "approved", (REQUESTED,), APPROVED, frozenset({TOPIC_SIDE})),
        Transition("reject", "rejected", (REQUESTED,), REJECTED, frozenset({TOPIC_SIDE})),
        Transition("withdraw", "withdrawn", (REQUESTED,), WITHDRAWN, frozenset({APPLICATION_SIDE})),
    )}

    subscription = models.ForeignKey(Subscription, on_delete=models.CASCADE, related_name="changes")
    state = models.CharField(max_length=10, choices=STATE_CHOICES, default=REQUESTED, editable=False,
                             db_index=True)
    before = models.JSONField(editable=False, help_text="The approved values when the change was asked.")
    after = models.JSONField(editable=False, help_text="The values asked for.")
    reviewer_comment = models.TextField(blank=True, editable=False)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                     related_name="+", editable=False)
    reviewed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="+", editable=False)
    reviewed_at = models.DateTimeField(null=True, blank=True, editable=False)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    objects = SubscriptionChangeQuerySet.as_manager()

    class Meta:
        ordering = ["-created"]
        verbose_name = "subscription change"
        constraints = [
            models.UniqueConstraint(fields=["subscription"], condition=Q(state="requested"),
                                    name="one_requested_change_per_subscription"),
        ]

    def __str__(self) -> str:
        return f"change {self.pk} of {self.subscription.subscription_id}"

    def get_absolute_url(self) -> str:
        return self.subscription.get_absolute_url() + f"#change-{self.pk}"

    @property
    def owning_team(self):
        return self.subscription.application.team

    @property
    def fields(self) -> list[tuple[str, object, object]]:
        """(label, before, after) of every field the change changes: the diff people review."""
        before, after = self.before or {}, self.after or {}
        return [(FIELD_LABELS.get(name, name), before.get(name), after.get(name))
                for name in REVIEWED_FIELDS if before.get(name) != after.get(name)]

    def sides(self, user) -> frozenset[str]:
        return self.subscription.sides(user)

    def side_names(self, transition: Transition) -> str:
        return self.subscription.side_names(transition)

    def after_transition(self, step: Transition, by) -> None:
        if step.name != "approve":
            return
        subscription = Subscription.objects.select_for_update().get(pk=self.subscription_id)
        for name in REVIEWED_FIELDS:
            if name in self.after:
                setattr(subscription, name, self.after[name])
        subscription.full_clean(exclude=["topic", "application"])  # a URL refused since stays refused
        subscription.save(update_fields=[*REVIEWED_FIELDS, "updated"])
        self.subscription = subscription
