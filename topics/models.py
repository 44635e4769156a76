from __future__ import annotations

import jsonschema
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models.functions import Lower
from django.urls import reverse

from meshadmin.models import Team, TeamOwned
from meshadmin.querysets import CatalogQuerySet, RestrictedQuerySet
from meshruntime.policy import MAX_TOPIC_LENGTH, PolicyError, topic_name_folded
from meshruntime.policy import validate_topic_name as _validate_topic_name


def validate_topic_name(value: str) -> None:
    """The runtime's own rule, so the portal never accepts a name the mesh would refuse."""
    try:
        _validate_topic_name(value)
    except PolicyError as exc:
        message = str(exc)
        raise ValidationError(message[0].upper() + message[1:] + ".", code="invalid_topic_name") from None


def validate_json_schema(value) -> None:
    if value in (None, ""):
        return
    if not isinstance(value, dict):
        raise ValidationError("A JSON Schema must be a JSON object.")
    try:
        jsonschema.validators.validator_for(value).check_schema(value)
    except jsonschema.SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(root)"
        raise ValidationError(f"Not a valid JSON Schema at {where}: {exc.message}") from None


class StoreQuerySet(RestrictedQuerySet):
    visible_to_all = True  # stores are infrastructure: everyone sees them, staff manage them


class EventStore(models.Model):
    """Where a topic's events live. Connection secrets stay with the runtimes."""

    REDIS, KAFKA, NATS, MQTT = "redis", "kafka", "nats", "mqtt"
    KIND_CHOICES = [(REDIS, "Redis Streams"), (KAFKA, "Kafka"), (NATS, "NATS JetStream"), (MQTT, "MQTT broker")]
    # MQTT keeps no events (docs/stores.md): devices publish into topics through it, and
    # subscriptions deliver to it, but no topic lives on it
    HOLDS_TOPICS = (REDIS, KAFKA, NATS)

    name = models.SlugField(max_length=100, unique=True)
    kind = models.CharField(max_length=20, choices=KIND_CHOICES, default=REDIS)
    connection = models.SlugField(
        max_length=100, default="default",
        help_text="The name runtimes (and the portal's MESH_STORES) know this store's URL by: "
                  "--store <connection>=kafka://broker:9092. Credentials never leave them.",
    )
    description = models.TextField(blank=True)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    objects = StoreQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        verbose_name = "event store"

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("topics:eventstore", args=[self.pk])

    @property
    def owning_team(self):
        return None


class TagQuerySet(RestrictedQuerySet):
    visible_to_all = True


class Tag(models.Model):
    name = models.SlugField(max_length=50, unique=True)

    objects = TagQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return f"{reverse('topics:topic_list')}?tag={self.name}"

    @property
    def owning_team(self):
        return None


class Topic(TeamOwned, models.Model):
    ACTIVE, DEPRECATED = "active", "deprecated"
    LIFECYCLE_CHOICES = [(ACTIVE, "Active"), (DEPRECATED, "Deprecated")]

    name = models.CharField(
        max_length=MAX_TOPIC_LENGTH, unique=True, validators=[validate_topic_name],
        help_text="Dot-separated segments of letters, digits, '-' and '_', like orders.eu.created or "
                  "TEST-TOPIC-HTTP-ASYNC; case-sensitive.",
    )
    description = models.TextField(blank=True, help_text="Markdown.")
    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="topics")
    store = models.ForeignKey(EventStore, on_delete=models.PROTECT, related_name="topics")
    tags = models.ManyToManyField(Tag, blank=True, related_name="topics")
    lifecycle = models.CharField(max_length=12, choices=LIFECYCLE_CHOICES, default=ACTIVE)
    sunset = models.DateField(null=True, blank=True, help_text="Required when deprecated.")
    retention_max_age = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(60)],
        help_text="Seconds an event is kept; empty for no age limit.",
    )
    retention_max_length = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1)],
        help_text="Events kept at most; empty for no length limit.",
    )
    data_schema = models.JSONField(
        null=True, blank=True, validators=[validate_json_schema],
        help_text="A JSON Schema that every event's data must satisfy.",
    )
    example_event = models.JSONField(null=True, blank=True, help_text="A CloudEvent, as JSON.")
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    objects = CatalogQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        constraints = [
            # Names are case-sensitive, but two that differ only in case would be mistaken for each
            # other; the runtime refuses such a document too (meshruntime.policy.topic_name_folded).
            models.UniqueConstraint(Lower("name"), name="topic_name_unique_ignoring_case",
                                    violation_error_message="A topic with this name in another case exists."),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        errors = {}
        if self.name:
            # the constraint's own message cannot name the other topic; this one does
            clash = (Topic.objects.annotate(folded=Lower("name")).filter(folded=topic_name_folded(self.name))
                     .exclude(pk=self.pk).values_list("name", flat=True).first())
            if clash is not None and clash != self.name:
                errors["name"] = f"{self.name} differs only in case from the topic {clash}."
        if self.lifecycle == self.DEPRECATED and not self.sunset:
            errors["sunset"] = "A deprecated topic needs a sunset date."
        if self.lifecycle == self.ACTIVE and self.sunset:
            errors["sunset"] = "Only a deprecated topic has a sunset date."
        if self.example_event is not None:
            if not isinstance(self.example_event, dict):
                errors["example_event"] = "The example event must be a JSON object (a CloudEvent)."
            elif self.data_schema and "data" in self.example_event and not errors.get("data_schema"):
                try:
                    jsonschema.validate(self.example_event["data"], self.data_schema)
                except jsonschema.ValidationError as exc:
                    where = "/".join(str(p) for p in exc.absolute_path) or "(root)"
                    errors["example_event"] = f"Its data does not match the schema at {where}: {exc.message}"
                except jsonschema.SchemaError:
                    pass  # reported on data_schema by its validator
        if errors:
            raise ValidationError(errors)
