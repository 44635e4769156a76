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
