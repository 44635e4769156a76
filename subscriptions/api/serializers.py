from __future__ import annotations

from rest_framework import serializers

from governance.models import Application
from meshadmin.api.serializers import MeshModelSerializer, StepSerializer  # noqa: F401 - re-exported
from meshadmin.querysets import CHANGE

from ..models import Subscription


class SubscriptionSerializer(MeshModelSerializer):
    """A subscription without its signing secret (``GET …/signing-secret/``, for the subscriber).
    ``state`` changes only through the workflow actions; topic and application are set once."""

    url = serializers.HyperlinkedIdentityField(view_name="api:subscription-detail")
    subscription_id = serializers.CharField(read_only=True)

    class Meta:
        model = Subscription
        fields = ["id", "url", "display", "subscription_id", "topic", "application", "state", "webhook_url",
                  "delivery_mode", "timeout_ms", "max_attempts", "backoff_base_ms", "backoff_cap_ms",
                  "max_in_flight", "filters", "reviewer_comment", "requested_by", "reviewed_by", "reviewed_at",
                  "created", "updated"]
        read_only_fields = ["reviewer_comment"]

    def get_fields(self):
        fields = super().get_fields()
        request = self.context.get("request")
        if isinstance(self.instance, Subscription):
            fields["topic"].read_only = fields["application"].read_only = True
        elif request is not None:
            fields["application"].queryset = Application.objects.restrict(request.user, CHANGE)
        return fields

    def validate(self, attrs):
        if "filters" in attrs and attrs["filters"] is None:
            attrs["filters"] = []
        return super().validate(attrs)


class SigningSecretSerializer(serializers.Serializer):
    signing_secret = serializers.CharField(help_text="HMAC key of the deliveries' signatures.")
