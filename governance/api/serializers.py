from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers

from meshadmin.api.serializers import MeshModelSerializer
from meshadmin.querysets import CHANGE
from meshruntime.policy import ACTIONS, PolicyError, validate_topic_name

from .. import rules
from ..models import AccessRule, Application, ApplicationKey, RoutingRule
from ..validation import TITLES


def _raise(exc: DjangoValidationError):
    raise serializers.ValidationError(exc.message_dict) from None


class ApplicationSerializer(MeshModelSerializer):
    url = serializers.HyperlinkedIdentityField(view_name="api:application-detail")

    class Meta:
        model = Application
        fields = ["id", "url", "display", "name", "team", "description", "contact", "created", "updated"]


class ApplicationKeySerializer(MeshModelSerializer):
    """A key without its secret. The answer to a creation alone carries ``key``, the plain key:
    copy it then, it is never shown again."""

    url = serializers.HyperlinkedIdentityField(view_name="api:applicationkey-detail")
    is_active = serializers.BooleanField(read_only=True)
    choice_actions = {"application": CHANGE}

    class Meta:
        model = ApplicationKey
        fields = ["id", "url", "display", "application", "description", "prefix", "expires", "revoked",
                  "is_active", "created_by", "created"]
        read_only_fields = ["prefix", "revoked", "created_by"]

    def get_fields(self):
        fields = super().get_fields()
        if isinstance(self.instance, ApplicationKey):
            fields["application"].read_only = True  # a key stays with its application
        return fields

    def create(self, validated_data):
        key = ApplicationKey(created_by=self.context["request"].user, **validated_data)
        plain = key.generate()
        key.save()
        key.plain_key = plain
        return key

    def to_representation(self, instance):
        data = super().to_representation(instance)
        plain = getattr(instance, "plain_key", None)
        if plain is not None:
            data["key"] = plain
        return data


class AccessRuleSerializer(MeshModelSerializer):
    url = serializers.HyperlinkedIdentityField(view_name="api:accessrule-detail")
    rule_id = serializers.CharField(read_only=True)

    class Meta:
        model = AccessRule
        fields = ["id", "url", "display", "rule_id", "team", "principal_kind", "principal_application",
                  "principal_team", "topic_pattern", "publish", "subscribe", "effect", "description",
                  "created", "updated"]

    def validate(self, attrs):
        attrs = super().validate(attrs)
        current = self.instance
        team = attrs.get("team", getattr(current, "team", None))
        pattern = attrs.get("topic_pattern", getattr(current, "topic_pattern", ""))
        try:
            rules.check_access_rule_authority(self.context["request"].user, team, pattern)
        except DjangoValidationError as exc:
            _raise(exc)
        return attrs


class RoutingRuleSerializer(MeshModelSerializer):
    """A routing rule with its review. Saving one that reads another team's topics requests it
    from that team (``state`` = requested; it routes nothing until approved); approve, reject,
    revoke and request again with ``POST …/<step>/``."""

    url = serializers.HyperlinkedIdentityField(view_name="api:routingrule-detail")
    rule_id = serializers.CharField(read_only=True)
    routes = serializers.SerializerMethodField(help_text="Whether the rule is in the configuration now.")
    not_routing_because = serializers.SerializerMethodField(help_text="Why it is not, or null.")
    schema_warnings = serializers.SerializerMethodField(help_text=(
        "Where a target's schema refuses data that a source topic admits (a structural comparison of the "
        "schemas): the runtimes drop such copies, the events stay in their topic. Empty when none is found."))

    class Meta:
        model = RoutingRule
        fields = ["id", "url", "display", "rule_id", "team", "source_pattern", "filters", "targets", "enabled",
                  "order", "description", "state", "source_team", "requested_by", "reviewed_by", "reviewed_at",
                  "reviewer_comment", "routes", "not_routing_because", "schema_warnings", "created", "updated"]
        read_only_fields = ["state", "source_team", "requested_by", "reviewed_by", "reviewed_at", "reviewer_comment"]

    review_requested = False

    def get_routes(self, obj) -> bool:
        return self.get_not_routing_because(obj) is None

    def get_not_routing_because(self, obj) -> str | None:
        if "topic_owners" not in self.context:  # once per response, however many rules it lists
            self.context["topic_owners"] = rules.TopicOwners.load()
        return rules.routing_blocker_of(obj, self.context["topic_owners"])

    def get_schema_warnings(self, obj) -> list[str]:
        if "topic_schemas" not in self.context:  # once per response, however many rules it lists
            listed = self.parent.instance if isinstance(self.parent, serializers.ListSerializer) else None
            self.context["topic_schemas"] = rules.schemas_for(listed if listed is not None else [obj])
        return [rules.schema_gap_text(source, target, gaps) for source, target, gaps
                in rules.schema_gaps(obj.source_pattern, obj.targets.all(), self.context["topic_schemas"])]

    def validate(self, attrs):
        current = self.instance
        if "filters" in attrs and attrs["filters"] is None:
            attrs["filters"] = []
        attrs = super().validate(attrs)
        targets = attrs.get("targets", list(current.targets.all()) if current else [])
        user = self.context["request"].user
        team = attrs.get("team", getattr(current, "team", None))
        source = attrs.get("source_pattern", getattr(current, "source_pattern", ""))
        try:
            rules.check_filters(attrs.get("filters", getattr(current, "filters", [])))
            self.source_team = rules.check_routing_source(team, source)
            rules.check_routing_targets(user, team, targets)
            rules.check_routing_cycle(source, targets, attrs.get("enabled", getattr(current, "enabled", True)),
                                      exclude_pk=getattr(current, "pk", None))
        except DjangoValidationError as exc:
            _raise(exc)
        self.targets = targets
        return attrs

    def save(self, **kwargs):
        rule = self.instance or RoutingRule()
        for name, value in {**self.validated_data, **kwargs}.items():
            if name != "targets":
                setattr(rule, name, value)
        self.review_requested = rule.prepare_review(self.context["request"].user, self.source_team, self.targets)
        if self.instance is None:
            kwargs = {**kwargs, "state": rule.state, "source_team": rule.source_team, "requested_by":
                      rule.requested_by, "reviewed_by": rule.reviewed_by, "reviewed_at": rule.reviewed_at}
        return super().save(**kwargs)


class SimulationQuerySerializer(serializers.Serializer):
    application = serializers.SlugRelatedField(slug_field="name", queryset=Application.objects.all())
    topic = serializers.CharField(max_length=249, help_text="A topic name; it need not exist yet.")
    action = serializers.ChoiceField(choices=ACTIONS)

    def validate_topic(self, value: str) -> str:
        try:
            validate_topic_name(value)
        except PolicyError as exc:
            raise serializers.ValidationError(str(exc)) from None
        return value


class RuleSerializer(serializers.Serializer):
    id = serializers.CharField()
    principals = serializers.JSONField(help_text='Application names, or "*" for everyone.')
    topic = serializers.CharField()
    actions = serializers.ListField(child=serializers.CharField())
    effect = serializers.CharField()
    description = serializers.CharField(allow_blank=True)
    url = serializers.CharField(allow_null=True, help_text="The page of the rule or subscription.")


class RouteSerializer(serializers.Serializer):
    id = serializers.CharField()
    source = serializers.CharField()
    targets = serializers.ListField(child=serializers.CharField())
    filters = serializers.JSONField()
    order = serializers.IntegerField()
    url = serializers.CharField(allow_null=True, help_text="The page of the routing rule.")


class SimulationSerializer(serializers.Serializer):
    application = serializers.CharField()
    topic = serializers.CharField()
    action = serializers.CharField()
    allowed = serializers.BooleanField()
    reason = serializers.CharField()
    deciding_rule = RuleSerializer(allow_null=True)
    matched = RuleSerializer(many=True)
    routes = RouteSerializer(many=True, help_text="For an allowed publish: the routing rules that copy the event "
                                                  "(when their filters match it).")


class FindingSerializer(serializers.Serializer):
    """A validation warning (governance.validation): legal, but probably not what anyone wants."""

    code = serializers.ChoiceField(choices=list(TITLES))
    title = serializers.CharField()
    message = serializers.CharField()
    object_type = serializers.CharField(help_text="app_label.model of the object it is about")
    object_id = serializers.IntegerField()
    display = serializers.CharField()
    page_url = serializers.CharField(help_text="The object's page in the portal.")

    def to_representation(self, finding):
        obj = finding.obj
        return {"code": finding.code, "title": finding.title, "message": finding.message,
                "object_type": f"{obj._meta.app_label}.{obj._meta.model_name}", "object_id": obj.pk,
                "display": str(obj), "page_url": obj.get_absolute_url()}


class FindingListSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    results = FindingSerializer(many=True)


class FindingQuerySerializer(serializers.Serializer):
    code = serializers.ChoiceField(choices=list(TITLES), required=False, allow_blank=True,
                                   help_text="Only findings of this kind (empty: all).")
