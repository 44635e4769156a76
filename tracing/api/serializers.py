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


# -- the topology ----------------------------------------------------------------------------------------

TEAM_OR_ID = r"^[-A-Za-z0-9_]{1,100}$"
TOPIC_PREFIX = r"^[-A-Za-z0-9_.]{0,249}$"


class TopologyFiltersSerializer(serializers.Serializer):
    """The query parameters of ``GET /api/v1/topology/``: each narrows the graph to some topics and
    everything around them (their publishers, subscriptions, and the routes in and out)."""

    team = serializers.RegexField(TEAM_OR_ID, required=False, allow_blank=True, max_length=100, error_messages={
                                      "invalid": "A team's id or slug: letters, digits, '-' and '_'."},
                                  help_text="A team's id or slug: its topics, and the topics its applications "
                                            "publish or subscribe to. One that names no team gives an empty graph; "
                                            "empty: every team.")
    prefix = serializers.RegexField(TOPIC_PREFIX, required=False, allow_blank=True, max_length=249, error_messages={
                                        "invalid": "The start of a topic name: letters, digits, '.', '-' and '_'."},
                                    help_text="Topics whose name starts with this (``orders.``).")
    application = serializers.RegexField(TEAM_OR_ID, required=False, allow_blank=True, max_length=100,
                                         error_messages={
                                             "invalid": "An application's id or name: letters, digits, '-' and "
                                                        "'_'."},
                                         help_text="An application's id or name: the topics it publishes or "
                                                   "subscribes to. One that names no application gives an empty "
                                                   "graph.")


class TopologyNodeSerializer(serializers.Serializer):
    id = serializers.CharField(help_text="``application:<id>``, ``topic:<id>``, ``domain:<first segment>``, "
                                         "``subscription:<id>`` or ``host:<host[:port]>``.")
    kind = serializers.ChoiceField(["application", "topic", "domain", "subscription", "host"])
    label = serializers.CharField()
    url = serializers.CharField(allow_null=True, help_text="The object's page (none for domains and hosts).")
    team = serializers.CharField(required=False, help_text="Applications and topics: the owning team's slug.")
    domain = serializers.CharField(required=False, help_text="Topics: the first segment of the name, the group "
                                                             "the page draws them in.")
    short = serializers.CharField(required=False, help_text="Topics: the name without its domain.")
    lifecycle = serializers.CharField(required=False)
    context = serializers.BooleanField(required=False, help_text="Topics: outside the filters, drawn because a "
                                                                 "route joins them to a topic inside.")
    topics = serializers.IntegerField(required=False, help_text="Domains: how many of their topics are drawn.")
    name = serializers.CharField(required=False, help_text="Subscriptions: ``sub-<id>``, as in the metrics.")
    state = serializers.CharField(required=False, help_text="Subscriptions: active or paused.")


class TopologyEdgeSerializer(serializers.Serializer):
    id = serializers.CharField()
    kind = serializers.ChoiceField(["publish", "route", "deliver", "webhook"],
                                   help_text="application → topic, topic → topic (a routing rule), topic → "
                                             "subscription, subscription → its webhook's host.")
    source = serializers.CharField()
    target = serializers.CharField()
    url = serializers.CharField(help_text="The page of what the edge shows: a topic's Traffic tab, the routing "
                                          "rule, a subscription's Metrics tab.")
    declared = serializers.BooleanField(help_text="False for an application → topic edge that no rule allows, "
                                                  "drawn because Prometheus saw it publish or be refused there.")
    label = serializers.CharField(required=False)
    state = serializers.CharField(required=False)
    rate = serializers.FloatField(allow_null=True, help_text="Per second: stored events (publish), copies (route), "
                                                             "delivered or filtered events (deliver, webhook); "
                                                             "null without rates.")
    errors = serializers.FloatField(allow_null=True, help_text="Per second: refusals (publish), dead letters and "
                                                               "retried attempts (deliver, webhook).")
    error_ratio = serializers.FloatField(allow_null=True, help_text="errors / (rate + errors); null when idle.")
    health = serializers.ChoiceField(["unknown", "idle", "ok", "degraded", "failing"])
    detail = serializers.DictField(child=serializers.FloatField(), help_text="Refusals by reason, or deliveries "
                                                                             "by outcome, per second.")


class TopologySerializer(serializers.Serializer):
    filters = serializers.DictField(child=serializers.CharField(allow_null=True))
    rates_available = serializers.BooleanField()
    rates_reason = serializers.CharField(allow_null=True, help_text="Why there are no rates, when so.")
    rates_hint = serializers.CharField(allow_null=True, help_text="How to fix it.")
    rates_at = serializers.FloatField(allow_null=True, help_text="When Prometheus answered (unix seconds).")
    rates_failing_since = serializers.FloatField(allow_null=True)
    rates_window = serializers.CharField(help_text="The window the rates are taken over (``20s``).")
    refresh_seconds = serializers.IntegerField(help_text="How often the rates change: poll no faster.")
    thresholds = serializers.DictField(child=serializers.FloatField(),
                                       help_text="Error shares above which an edge is degraded, and failing.")
    nodes = TopologyNodeSerializer(many=True)
    edges = TopologyEdgeSerializer(many=True)
