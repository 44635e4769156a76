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

from meshadmin.models import Membership, Team, TeamOwned
from meshadmin.querysets import CatalogQuerySet, TeamOwnedQuerySet, team_ids
from meshadmin.workflow import Reviewed, Transition
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


RULE_SIDE, SOURCE_SIDE = "rule", "source"


class RoutingRuleQuerySet(CatalogQuerySet):
    def awaiting_review_by(self, user) -> RoutingRuleQuerySet:
        """Rules that wait for this user's approval: reading topics of teams they edit (all for staff)."""
        requested = self.filter(state=RoutingRule.REQUESTED)
        if user.is_staff or user.is_superuser:
            return requested
        return requested.filter(source_team__in=team_ids(user, Membership.EDITOR_ROLES))


class RoutingRule(TeamOwned, Reviewed, models.Model):
    """Copies events published to matching topics onto target topics.

    Routing out of a topic is reading it, so a rule whose source covers another team's topics
    needs that team's approval, like a subscription: requested, then approved or rejected by the
    source side; an approved rule can be revoked by the source side; a rejected or revoked one
    can be requested again by the rule's side.

    ``source_team`` is that other team (at most one: ``governance.rules.check_routing_source``);
    its editors are the rule's *source side*, the editors of ``team`` its *rule side*, staff
    both. A rule reading only its own team's topics needs nobody's approval and is approved when
    saved; so is one saved by an editor of the source team, or by staff. Changing what a rule
    copies or where (source, filters, targets) asks again (``prepare_review``). Only approved
    rules are compiled, and only while their source covers no topic of a third team
    (``governance.rules.compiled_routing_rules``).
    """

    REQUESTED, APPROVED, REJECTED, REVOKED = "requested", "approved", "rejected", "revoked"
    STATE_CHOICES = [(REQUESTED, "Requested"), (APPROVED, "Approved"), (REJECTED, "Rejected"),
                     (REVOKED, "Revoked")]
    #: Fields whose change alters what the rule copies, or where: the source team reviews it again.
    REVIEWED_FIELDS = ("team", "source_pattern", "filters", "targets")
    EITHER_SIDE = frozenset({RULE_SIDE, SOURCE_SIDE})
    TRANSITIONS = {t.name: t for t in (
        Transition("approve", "approved", (REQUESTED,), APPROVED, frozenset({SOURCE_SIDE})),
        Transition("reject", "rejected", (REQUESTED,), REJECTED, frozenset({SOURCE_SIDE})),
        Transition("revoke", "revoked", (APPROVED,), REVOKED, frozenset({SOURCE_SIDE})),
        Transition("request", "requested again", (REJECTED, REVOKED), REQUESTED, frozenset({RULE_SIDE})),
    )}

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
    state = models.CharField(max_length=10, choices=STATE_CHOICES, default=APPROVED, editable=False,
                             db_index=True)  # the inbox counts requests on every page
    source_team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
                                    editable=False,
                                    help_text="The other team whose topics the source covers; it approves the rule.")
    reviewer_comment = models.TextField(blank=True, editable=False)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                     related_name="+", editable=False)
    reviewed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="+", editable=False)
    reviewed_at = models.DateTimeField(null=True, blank=True, editable=False)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    objects = RoutingRuleQuerySet.as_manager()

    class Meta:
        ordering = ["order", "pk"]
        verbose_name = "routing rule"

    def __str__(self) -> str:
        return f"route-{self.pk}: {self.source_pattern}" if self.pk else f"route: {self.source_pattern}"

    @property
    def rule_id(self) -> str:
        return f"route-{self.pk}"

    # Review

    def sides(self, user) -> frozenset[str]:
        """The sides ``user`` acts for: editors of the rule's team and of its source team."""
        if not user.is_authenticated or not user.is_active:
            return frozenset()
        if user.is_staff or user.is_superuser:
            return self.EITHER_SIDE
        teams = set(Membership.objects.filter(
            user=user, role__in=Membership.EDITOR_ROLES, team_id__in=[self.team_id, self.source_team_id],
        ).values_list("team_id", flat=True))
        sides = set()
        if self.team_id in teams:
            sides.add(RULE_SIDE)
        if self.source_team_id is not None and self.source_team_id in teams:
            sides.add(SOURCE_SIDE)
        return frozenset(sides)

    def side_names(self, transition: Transition) -> str:
        teams = []
        if SOURCE_SIDE in transition.sides:
            teams.append(f"{self.source_team} (whose topics the rule reads)" if self.source_team_id
                         else "staff")
        if RULE_SIDE in transition.sides:
            teams.insert(0, f"{self.team} (the rule's team)")
        return " or ".join(teams)

    def transition_fields(self, step: Transition, by) -> list[str]:
        if step.name == "request":
            self.requested_by = by
            return ["requested_by"]
        return []

    def prepare_review(self, by, source_team: Team | None, targets) -> bool:
        """Set the review state for a save of this rule by ``by``; True if ``source_team`` must be
        asked (the caller tells them once the save commits).

        ``source_team`` is the other team whose topics the source covers (None: only the rule's
        own team's), ``targets`` the topics the save gives the rule. A save that leaves source,
        filters, targets, team and source team as they are keeps the state: reordering, disabling
        or describing a rule asks nobody.
        """
        if self.pk is not None:
            stored = RoutingRule.objects.filter(pk=self.pk).values(
                "team_id", "source_pattern", "filters", "source_team_id").first()
            if stored is not None:
                stored_targets = set(RoutingRule.targets.through.objects.filter(routingrule_id=self.pk)
                                     .values_list("topic_id", flat=True))
                same = (stored["team_id"] == self.team_id and stored["source_pattern"] == self.source_pattern
                        and stored["filters"] == self.filters
                        and stored["source_team_id"] == (source_team.pk if source_team else None)
                        and stored_targets == {topic.pk for topic in targets})
                if same:
                    return False
        self.source_team = source_team
        self.reviewer_comment = ""
        if source_team is None:
            self.state, self.reviewed_by, self.reviewed_at = self.APPROVED, None, None
            return False
        if SOURCE_SIDE in self.sides(by):
            # The author may approve it: asking them to would add a click and nothing else.
            self.state, self.reviewed_by, self.reviewed_at = self.APPROVED, by, timezone.now()
            return False
        self.state, self.requested_by, self.reviewed_by, self.reviewed_at = self.REQUESTED, by, None, None
        return True
