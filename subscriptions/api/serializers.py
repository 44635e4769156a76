from __future__ import annotations

from rest_framework import serializers

from meshadmin.api.serializers import MeshModelSerializer
from meshadmin.querysets import CHANGE

from ..models import Subscription


class SubscriptionSerializer(MeshModelSerializer):
    """A subscription without its signing secret (``GET …/signing-secret/``, for the subscriber).
    ``state`` changes only through the workflow actions; topic and application are set once."""

    url = serializers.HyperlinkedIdentityField(view_name="api:subscription-detail")
    subscription_id = serializers.CharField(read_only=True)
    choice_actions = {"application": CHANGE}

    class Meta:
        model = Subscription
        fields = ["id", "url", "display", "subscription_id", "topic", "application", "state", "webhook_url",
                  "mqtt_store", "mqtt_topic", "delivery_mode", "timeout_ms", "max_attempts", "backoff_base_ms",
                  "backoff_cap_ms",
                  "max_in_flight", "filters", "responder", "reviewer_comment", "requested_by", "reviewed_by",
                  "reviewed_at", "created", "updated"]
        read_only_fields = ["reviewer_comment"]
        # No validators generated from the unique constraints: the model's clean() (run by validate())
        # says the same thing naming the other subscription, under the field it is about.
        validators: list = []

    def get_fields(self):
        fields = super().get_fields()
        if isinstance(self.instance, Subscription):
            fields["topic"].read_only = fields["application"].read_only = True
        return fields

    def validate(self, attrs):
        if "filters" in attrs and attrs["filters"] is None:
            attrs["filters"] = []
        return super().validate(attrs)


class StepSerializer(serializers.Serializer):
    comment = serializers.CharField(required=False, allow_blank=True, default="",
                                    help_text="The reviewer's comment (approve, reject); required to reject.")


class SigningSecretSerializer(serializers.Serializer):
    signing_secret = serializers.CharField(help_text="HMAC key of the deliveries' signatures.")
