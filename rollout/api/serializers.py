"""Serializers of the rollout's API. RuntimeSerializer's output also goes to the open runtimes
pages (rollout.live), so a page and the API never disagree on what a runtime's state is."""

from __future__ import annotations

from rest_framework import serializers

from meshadmin.api.fields import StrictCharField

from ..disclosure import redact
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
    diff = serializers.SerializerMethodField(help_text="Added, removed and changed entries; no digest or secret.")

    class Meta(ConfigVersionSerializer.Meta):
        fields = [*ConfigVersionSerializer.Meta.fields, "changes", "diff"]

    def get_diff(self, obj) -> dict:
        return redact(obj.diff or {})


class RowChangeSerializer(serializers.Serializer):
    action = serializers.ChoiceField(choices=["create", "update", "delete"])
    model = serializers.CharField()
    object = serializers.CharField(help_text="The entry's identity in the document: a name or rule-12, sub-7, …")
    fields = serializers.ListField(child=serializers.DictField(), help_text="field, before, after")
    note = serializers.CharField(allow_blank=True)


class RestorePlanSerializer(serializers.Serializer):
    version = serializers.IntegerField()
    confirm = serializers.CharField(help_text="POST it to …/rollback/ to do exactly this.")
    summary = serializers.CharField()
    changes = RowChangeSerializer(many=True)
    notes = serializers.ListField(child=serializers.CharField(), help_text="What the restore cannot do, and why.")
    remaining = serializers.DictField(help_text="What would still differ from the version afterwards.")


class RollbackRequestSerializer(serializers.Serializer):
    confirm = StrictCharField(help_text="The ``confirm`` of the restore preview you reviewed.")


class PushResultSerializer(serializers.Serializer):
    outcome = serializers.ChoiceField(choices=["published", "unchanged", "republished", "failed"])
    version = serializers.IntegerField(allow_null=True)
    error = serializers.CharField(allow_blank=True)
