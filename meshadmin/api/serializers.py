"""Base serializer: related choices restricted to the user, and the model's own validation."""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import models
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.exceptions import PermissionDenied

from meshadmin.choices import RelatedChoices
from meshadmin.models import Team
from meshadmin.querysets import VIEW

from .fields import (
    StrictBooleanField,
    StrictCharField,
    StrictEmailField,
    StrictIntegerField,
    StrictSlugField,
    StrictURLField,
)
from .permissions import not_a_member


@extend_schema_field({"oneOf": [{"type": "integer"}, {"type": "string", "pattern": r"^[-a-zA-Z0-9_]+$"}],
                      "description": "A team, by id or by slug."})
class TeamField(serializers.PrimaryKeyRelatedField):
    """A team by id (``2``) or by slug (``"payments"``); answers with the id."""

    default_error_messages = {"no_slug": 'No team with the slug "{value}".'}

    def to_internal_value(self, data):
        if isinstance(data, str) and data and not data.isdigit():
            team = self.get_queryset().filter(slug=data).first()
            if team is None:
                self.fail("no_slug", value=data[:100])
            return team
        return super().to_internal_value(data)


class MeshModelSerializer(RelatedChoices, serializers.ModelSerializer):
    """``validate()`` runs the model's ``full_clean()``, so API and forms obey the same rules.

    Related fields accept what the forms offer (meshadmin.choices): for ``team``, the teams in
    which the user may create things; for the fields in ``choice_actions``, what the user may
    change; otherwise what the user may see. A team (or an object) the user sees but may not
    pick is a 403 saying which role they lack, not "object does not exist".
    """

    display = serializers.SerializerMethodField()

    #: Input of the JSON type the description states, nothing DRF would coerce (meshadmin.api.fields).
    serializer_field_mapping = {
        **serializers.ModelSerializer.serializer_field_mapping,
        models.CharField: StrictCharField, models.TextField: StrictCharField, models.SlugField: StrictSlugField,
        models.URLField: StrictURLField, models.EmailField: StrictEmailField, models.BooleanField: StrictBooleanField,
        models.IntegerField: StrictIntegerField, models.BigIntegerField: StrictIntegerField,
        models.SmallIntegerField: StrictIntegerField, models.PositiveIntegerField: StrictIntegerField,
        models.PositiveSmallIntegerField: StrictIntegerField, models.PositiveBigIntegerField: StrictIntegerField,
    }

    def get_display(self, obj) -> str:
        return str(obj)

    def build_relational_field(self, field_name, relation_info):
        field_class, kwargs = super().build_relational_field(field_name, relation_info)
        if relation_info.related_model is Team and not relation_info.to_many:
            field_class = TeamField
        return field_class, kwargs

    def get_fields(self):
        fields = super().get_fields()
        request = self.context.get("request")
        user = getattr(request, "user", None)
        self._narrowed = {}
        if user is None:
            return fields
        for name, field in fields.items():
            related = getattr(field, "child_relation", field)
            queryset = getattr(related, "queryset", None)
            if queryset is None or field.read_only:
                continue
            allowed = self.related_choices(user, name, queryset)
            narrower = (name in self.team_fields or name in self.choice_actions) and related is field
            if narrower and hasattr(queryset, "restrict"):
                # Look up among what the user sees; validate() refuses what they may not pick.
                related.queryset = queryset.restrict(user, VIEW)
                self._narrowed[name] = allowed
            else:
                related.queryset = allowed
        return fields

    def new_instance(self):
        """The object a creation validates (``full_clean``) before it is saved."""
        return self.Meta.model()

    def pickable(self, name: str):
        """The related objects ``name`` accepts (what the form of the same model offers)."""
        field = self.fields[name]
        if name in self._narrowed:
            return self._narrowed[name]
        return getattr(field, "child_relation", field).queryset

    def refuse_unpickable(self, attrs) -> None:
        user = self.context["request"].user
        plural = self.Meta.model._meta.verbose_name_plural
        for name, allowed in self._narrowed.items():
            value = attrs.get(name)
            if value is None or allowed.filter(pk=value.pk).exists():
                continue
            if isinstance(value, Team):
                verb = "create" if self.instance is None else "move"
                doing = f"{verb} {plural} {'for' if verb == 'create' else 'to'} it"
                raise PermissionDenied(not_a_member(user, value, doing, owners_only=name in self.choice_actions))
            team = getattr(value, "owning_team", None)
            if team is None:
                raise PermissionDenied(f"You may not use {value._meta.verbose_name} {value} here.")
            raise PermissionDenied(not_a_member(user, team, f"create {plural} for its "
                                                            f"{value._meta.verbose_name_plural}"))

    def validate(self, attrs):
        attrs = super().validate(attrs)
        if getattr(self, "_narrowed", None):
            self.refuse_unpickable(attrs)
        model = self.Meta.model
        many_to_many = {f.name for f in model._meta.many_to_many}
        instance = self.instance or self.new_instance()
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

    comment = StrictCharField(required=False, allow_blank=True, default="",
                                    help_text="The reviewer's comment (approve, reject); required to reject.")
