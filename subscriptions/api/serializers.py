from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from meshadmin.api.serializers import MeshModelSerializer, StepSerializer  # noqa: F401 - re-exported
from meshadmin.querysets import CHANGE

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
