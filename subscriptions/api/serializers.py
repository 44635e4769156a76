from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from meshadmin.api.fields import StoredJSONField, StrictBooleanField
from meshadmin.api.serializers import MeshModelSerializer, StepSerializer  # noqa: F401 - re-exported
from meshadmin.querysets import CHANGE

from ..delivery import MAX_IDS, PAGE, STREAM_ID
from ..models import Subscription, SubscriptionChange


class SubscriptionChangeSerializer(serializers.ModelSerializer):
    """A change of what an approved subscription delivers, or where: ``before`` the approved
    values (still delivering), ``after`` the ones asked for. Review it with ``POST …/approve/``,
    ``…/reject/`` (topic side, comment required to reject) or ``…/withdraw/`` (application side)."""

    url = serializers.HyperlinkedIdentityField(view_name="api:subscriptionchange-detail")

    class Meta:
        model = SubscriptionChange
        fields = ["id", "url", "subscription", "state", "before", "after", "requested_by", "reviewed_by",
                  "reviewed_at", "reviewer_comment", "created", "updated"]
        read_only_fields = fields


class SubscriptionSerializer(MeshModelSerializer):
    """A subscription without its signing secret (``GET …/signing-secret/``, for the subscriber).
    ``state`` changes only through the workflow actions; topic and application are set once.

    Its delivery fields are the approved ones, which deliver. Changing the webhook URL, filters,
    delivery mode or ``responder`` of an active or paused subscription asks the topic's team: the
    answer is 202 and ``pending_change`` holds the request, unless you are on the topic side
    yourself."""

    url = serializers.HyperlinkedIdentityField(view_name="api:subscription-detail")
    subscription_id = serializers.CharField(read_only=True)
    choice_actions = {"application": CHANGE}
    pending_change = serializers.SerializerMethodField(help_text="The change that awaits approval, or null.")

    class Meta:
        model = Subscription
        fields = ["id", "url", "display", "subscription_id", "topic", "application", "state", "webhook_url",
                  "mqtt_store", "mqtt_topic", "delivery_mode", "timeout_ms", "max_attempts", "backoff_base_ms",
                  "backoff_cap_ms",
                  "max_in_flight", "filters", "responder", "reviewer_comment", "requested_by", "reviewed_by",
                  "reviewed_at", "pending_change", "created", "updated"]
        read_only_fields = ["reviewer_comment"]
        # No validators generated from the unique constraints: the model's clean() (run by validate())
        # says the same thing naming the other subscription, under the field it is about.
        validators: list = []

    def get_fields(self):
        fields = super().get_fields()
        if isinstance(self.instance, Subscription):
            fields["topic"].read_only = fields["application"].read_only = True
        return fields

    #: The change request an update became (Subscription.save_edit), for the view's answer.
    change = None

    @extend_schema_field(SubscriptionChangeSerializer(allow_null=True))
    def get_pending_change(self, obj) -> dict | None:
        change = obj.pending_change()
        return None if change is None else SubscriptionChangeSerializer(change, context=self.context).data

    def validate(self, attrs):
        if "filters" in attrs and attrs["filters"] is None:
            attrs["filters"] = []
        return super().validate(attrs)

    def update(self, instance, validated_data):
        for name, value in validated_data.items():
            setattr(instance, name, value)
        self.change = instance.save_edit(self.context["request"].user)
        return instance


class SigningSecretSerializer(serializers.Serializer):
    signing_secret = serializers.CharField(help_text="HMAC key of the deliveries' signatures.")


# Delivery (the subscription's Delivery tab, in the API)


class DeliveryStateSerializer(serializers.Serializer):
    """The consumer group of a subscription and what its runtimes reported (meshruntime.delivery_admin)."""

    group_exists = serializers.BooleanField(help_text="False until a runtime has started delivering it.")
    lag = serializers.IntegerField(allow_null=True, help_text="Events not read yet; null when too many to count.")
    pending = serializers.IntegerField(help_text="Events read by a runtime and not acknowledged yet.")
    consumers = serializers.IntegerField()
    dead_letters = serializers.IntegerField(help_text="Events in the dead-letter stream now.")
    redelivery_waiting = serializers.IntegerField(help_text="Dead letters put back, not delivered yet.")
    delivered = serializers.IntegerField()
    dead_lettered = serializers.IntegerField()
    filtered = serializers.IntegerField()
    retries = serializers.IntegerField()
    rate_per_second = serializers.FloatField(help_text="Deliveries per second over the last minute or two.")
    last_error = serializers.CharField(allow_blank=True)
    last_error_status = serializers.IntegerField(allow_null=True)
    last_error_at = serializers.DateTimeField(allow_null=True)
    last_delivered_at = serializers.DateTimeField(allow_null=True)
    held = serializers.CharField(allow_blank=True, help_text=(
        "Why the runtimes hold its delivery: its application may not subscribe to its topic "
        "(\"subscribe denied by rule rule-3 (deny orders.*)\"); empty when they do not. Events wait in "
        "the topic and the lag grows until the rule changes."))
    held_since = serializers.DateTimeField(allow_null=True)


class DeadLetterSerializer(serializers.Serializer):
    id = serializers.CharField(help_text="The dead letter's id: redeliver it by this id.")
    event_id = serializers.CharField(allow_blank=True)
    reason = serializers.CharField(allow_blank=True)
    reason_code = serializers.CharField(allow_blank=True)
    status = serializers.IntegerField(allow_null=True, help_text="The subscriber's last HTTP status, if any.")
    attempts = serializers.IntegerField()
    source_id = serializers.CharField(allow_blank=True, help_text="The event's id in the topic's stream.")
    at = serializers.DateTimeField(allow_null=True)
    event = StoredJSONField(help_text="The CloudEvent as it was stored, every number with all the digits it was "
                                      "published with (its raw text when it is not a JSON object).")


class DeadLetterPageSerializer(serializers.Serializer):
    results = DeadLetterSerializer(many=True, help_text="Newest first.")
    next_before = serializers.CharField(allow_null=True, help_text="Pass as ``before`` for the older ones.")


class DeadLetterQuerySerializer(serializers.Serializer):
    before = serializers.RegexField(STREAM_ID.pattern, required=False,
                                    help_text="Only dead letters older than this id (the next page).")
    limit = serializers.IntegerField(required=False, default=PAGE, min_value=1, max_value=500)


class RedeliverSerializer(serializers.Serializer):
    ids = serializers.ListField(child=serializers.RegexField(STREAM_ID.pattern), required=False,
                                max_length=MAX_IDS, min_length=1, help_text="Dead letters to put back, by id.")
    all = StrictBooleanField(required=False, default=False, help_text="true: every dead letter.")

    def validate(self, attrs):
        if bool(attrs.get("ids")) == attrs["all"]:
            raise serializers.ValidationError({"non_field_errors": ["Give either ids (dead-letter ids) or all=true."]})
        return attrs


class RedeliverResultSerializer(serializers.Serializer):
    redelivered = serializers.IntegerField(help_text="Dead letters put back (those already gone are not counted).")


class SkipToNowSerializer(serializers.Serializer):
    confirm = StrictBooleanField(help_text="true: the events not delivered yet will never be.")

    def validate_confirm(self, value):
        if value is not True:
            raise serializers.ValidationError("Confirm with true: skipping cannot be undone.")
        return value


class SkipResultSerializer(serializers.Serializer):
    skipped = serializers.IntegerField(allow_null=True, help_text="Events never delivered; null: too many to count.")
    acknowledged = serializers.IntegerField(help_text="Pending events acknowledged without delivery.")
