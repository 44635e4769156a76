"""Base serializer: related choices restricted to the user, and the model's own validation."""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers

from meshadmin.choices import RelatedChoices


class MeshModelSerializer(RelatedChoices, serializers.ModelSerializer):
    """``validate()`` runs the model's ``full_clean()``, so API and forms obey the same rules.

    Related fields accept what the forms offer (meshadmin.choices): what the requesting user may
    see; for ``team``, the teams in which the user may create things.
    """

    display = serializers.SerializerMethodField()

    def get_display(self, obj) -> str:
        return str(obj)

    def get_fields(self):
        fields = super().get_fields()
        request = self.context.get("request")
        user = getattr(request, "user", None)
        if user is None:
            return fields
        for name, field in fields.items():
            related = getattr(field, "child_relation", field)
            queryset = getattr(related, "queryset", None)
            if queryset is not None and not field.read_only:
                related.queryset = self.related_choices(user, name, queryset)
        return fields

    def validate(self, attrs):
        attrs = super().validate(attrs)
        model = self.Meta.model
        many_to_many = {f.name for f in model._meta.many_to_many}
        instance = self.instance or model()
        for name, value in attrs.items():
            if name not in many_to_many:
                setattr(instance, name, value)
        try:
            instance.full_clean()
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.message_dict) from None
        return attrs


class StepSerializer(serializers.Serializer):
    """The body of a review step (meshadmin.workflow)."""

    comment = serializers.CharField(required=False, allow_blank=True, default="",
                                    help_text="The reviewer's comment (approve, reject); required to reject.")
