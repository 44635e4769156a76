"""Serializers of the rollout's API. RuntimeSerializer's output also goes to the open runtimes
pages (rollout.live), so a page and the API never disagree on what a runtime's state is."""

from __future__ import annotations

from rest_framework import serializers

from ..models import ConfigVersion, Runtime


class RuntimeSerializer(serializers.ModelSerializer):
    """``context["latest"]``: the newest ConfigVersion (looked up once per response)."""

    url = serializers.HyperlinkedIdentityField(view_name="api:runtime-detail")
    page_url = serializers.CharField(source="get_absolute_url", read_only=True)
    state = serializers.SerializerMethodField()
    sync = serializers.SerializerMethodField()

    class Meta:
        model = Runtime
        fields = ["id", "url", "page_url", "runtime_id", "application", "host", "pid", "software_version",
                  "config_version", "config_checksum", "last_error", "counters", "metrics_url", "started_at",
                  "first_seen", "last_seen", "state", "sync"]

    def to_representation(self, instance):
        if "request" not in self.context:
            # Websocket messages carry no request: the absolute URL is the page's business.
            self.fields.pop("url", None)
        return super().to_representation(instance)

    def get_state(self, obj) -> str:
        return obj.state

    def get_sync(self, obj) -> str:
        latest = self.context.get("latest")
        return obj.sync_with(latest.version if latest is not None else None)


class ConfigVersionSerializer(serializers.ModelSerializer):
    url = serializers.HyperlinkedIdentityField(view_name="api:configversion-detail")
    page_url = serializers.CharField(source="get_absolute_url", read_only=True)

    class Meta:
        model = ConfigVersion
        fields = ["id", "url", "page_url", "version", "checksum", "source_checksum", "kind", "created",
                  "created_by", "actor_name", "reason", "published_at", "rollback_of", "pruned"]


class ConfigVersionDetailSerializer(ConfigVersionSerializer):
    class Meta(ConfigVersionSerializer.Meta):
        fields = [*ConfigVersionSerializer.Meta.fields, "changes", "diff"]


class PushResultSerializer(serializers.Serializer):
    outcome = serializers.ChoiceField(choices=["published", "unchanged", "republished", "failed"])
    version = serializers.IntegerField(allow_null=True)
    error = serializers.CharField(allow_blank=True)
