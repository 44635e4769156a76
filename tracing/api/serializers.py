"""What the event API answers: journeys, the reason an id has none, test events and their refusals.

These serializers document the answers (drf-spectacular) and shape them; the content comes from
``tracing.journeys`` and ``tracing.test_events``, which the pages use too.
"""

from __future__ import annotations

from rest_framework import serializers


class JourneyStepSerializer(serializers.Serializer):
    step = serializers.ChoiceField(["accepted", "denied", "routed", "stored", "attempt", "acked", "dead_lettered"])
    at = serializers.IntegerField(help_text="Epoch milliseconds, by the recording runtime's clock.")
    runtime = serializers.CharField(help_text="The runtime that recorded it (``portal`` for a test event).")
    since_start_ms = serializers.IntegerField()
    since_previous_ms = serializers.IntegerField(allow_null=True)
    position = serializers.CharField(required=False, allow_null=True,
                                     help_text="Stored steps: the event's position in the topic, when it is "
                                               "still there.")
    masked = serializers.ListField(child=serializers.CharField(), required=False,
                                   help_text="Fields left out because they may quote the data (you do not see "
                                             "this topic's payloads).")

    class Meta:
        # every other member of the recorded step is passed through (application, key_prefix,
        # topic, rule, path, target, subscription, attempt, status, latency_ms, error, reason, ...)
        ref_name = "JourneyStep"


class JourneySubscriptionSerializer(serializers.Serializer):
    subscription = serializers.CharField()
    outcome = serializers.ChoiceField(["acked", "dead_lettered", "retrying"])
    attempts = serializers.IntegerField()


class JourneySerializer(serializers.Serializer):
    event_id = serializers.CharField()
    topic = serializers.CharField(help_text="The topic the event was published to.")
    outcome = serializers.ChoiceField(["denied", "accepted", "stored", "retrying", "dead_lettered", "delivered"])
    payload_visible = serializers.BooleanField()
    truncated = serializers.BooleanField()
    steps = JourneyStepSerializer(many=True)
    subscriptions = JourneySubscriptionSerializer(many=True)
    event = serializers.DictField(allow_null=True, help_text="The event as stored (masked to its public "
                                                             "attributes and size without payload access), or "
                                                             "null when it is no longer in the store.")
    store_unavailable = serializers.CharField(allow_null=True, help_text="Why stored positions and the event "
                                                                         "could not be looked up, if so.")


class SamplingSerializer(serializers.Serializer):
    sample_rate = serializers.FloatField(allow_null=True)
    ttl_seconds = serializers.IntegerField(allow_null=True)
    runtimes = serializers.IntegerField()
    records_it = serializers.BooleanField(allow_null=True, help_text="Whether runtimes at this rate record "
                                                                     "this id's journey at all.")


class MissingJourneySerializer(serializers.Serializer):
    event_id = serializers.CharField()
    likely = serializers.ChoiceField(["not_sampled", "expired_or_never_seen", "depends", "unknown"])
    detail = serializers.CharField()
    sampling = SamplingSerializer(many=True)


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()


class TestEventSerializer(serializers.Serializer):
    """A test event to send; the portal sets id, time, specversion, datacontenttype and ``meshsender``."""

    __test__ = False  # not a pytest class, whatever its name

    application = serializers.CharField(help_text="The name of an application of a team you own or are a "
                                                  "member of: it is sent as that application.")
    type = serializers.CharField(max_length=500)
    source = serializers.CharField(max_length=500)
    subject = serializers.CharField(max_length=500, required=False, default="", allow_blank=True)
    extensions = serializers.DictField(required=False, default=dict,
                                       help_text="Extension attributes: lowercase names; string, integer or "
                                                 "boolean values.")
    data = serializers.JSONField(required=False, allow_null=True,
                                 help_text="JSON data, checked against the topic's schema. Absent or null: no data.")


class TestEventAcceptedSerializer(serializers.Serializer):
    __test__ = False

    id = serializers.CharField(help_text="The event's id; chosen so that every runtime records its journey.")
    topic = serializers.CharField()
    config_version = serializers.IntegerField(help_text="The published configuration it was checked against.")
    copies = serializers.IntegerField(help_text="Copies routing rules made to other topics.")
    warnings = serializers.ListField(child=serializers.CharField())
    event = serializers.DictField(help_text="The event as stored.")
    journey = serializers.CharField(help_text="The journey's API URL.")


class RefusalSerializer(serializers.Serializer):
    """What a runtime answers when it refuses an event (docs/runtime.md), plus the event's id."""

    error = serializers.CharField(help_text="forbidden, schema_mismatch, unknown_topic, too_large, not_published, "
                                            "not_ready, store_unavailable")
    status = serializers.IntegerField()
    message = serializers.CharField()
    event_id = serializers.CharField()
    rule = serializers.CharField(required=False, allow_null=True, help_text="forbidden: the deciding access rule "
                                                                            "(null: no rule allows it).")
    path = serializers.CharField(required=False, help_text="schema_mismatch: where the data does not match.")
