"""FilterSets shared by the pages and the API (one per model, as in NetBox)."""

from __future__ import annotations

import re
from datetime import UTC
from functools import reduce
from operator import or_

import django_filters
from django import forms
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django_filters.fields import IsoDateTimeField, ModelChoiceField
from django_filters.filterset import FILTER_FOR_DBFIELD_DEFAULTS, remote_queryset
from drf_spectacular.utils import extend_schema_field

from .models import AuditEntry, Membership, Team


class AnyIdField(ModelChoiceField):
    """An object by id (a team also by slug). An id or slug that matches nothing the user may pick
    filters to nothing rather than failing the request: a filter answers "which rows", and for an
    object that does not exist the answer is none. What is not an id at all is still an error."""

    def to_python(self, value):
        try:
            return super().to_python(value)
        except ValidationError:
            text = str(value).strip()
            if re.fullmatch(r"-?\d{1,18}", text):
                return self.queryset.model(pk=int(text))
            if self.queryset.model is Team and re.fullmatch(r"[-\w]{1,100}", text):
                return Team.objects.filter(slug=text).first() or Team(pk=0)
            raise


class UTCDateTimeField(IsoDateTimeField):
    """An ISO 8601 date and time, in UTC: any offset Python reads, the database reads too."""

    def to_python(self, value):
        moment = super().to_python(value)
        if moment is None:
            return None
        try:
            return moment.astimezone(UTC)
        except (OverflowError, ValueError):
            raise ValidationError("This date and time is out of range.", code="invalid") from None


class UTCDateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = UTCDateTimeField


class StrictNullBooleanSelect(forms.NullBooleanSelect):
    """Django's select (options unknown, true, false), handing on what it got for the field to
    judge, instead of reading anything it does not know as "unknown"."""

    def value_from_datadict(self, data, files, name):
        return data.get(name)


class StrictNullBooleanField(forms.NullBooleanField):
    """true or false (empty or "unknown": no filter); anything else is an error, not "no filter"."""

    widget = StrictNullBooleanSelect
    _VALUES = {"true": True, "false": False}

    def to_python(self, value):
        if value in (None, "", "unknown"):
            return None
        if isinstance(value, bool):
            return value
        if value not in self._VALUES:
            raise ValidationError("Use true or false.", code="invalid")
        return self._VALUES[value]


class BooleanFilter(django_filters.BooleanFilter):
    field_class = StrictNullBooleanField


class ObjectFilter(django_filters.ModelChoiceFilter):
    field_class = AnyIdField


@extend_schema_field({"oneOf": [{"type": "integer"}, {"type": "string"}], "description": "A team's id or slug."})
class TeamFilter(ObjectFilter):
    pass


class IntegerFilter(django_filters.NumberFilter):
    """A number filter on an integer field takes integers only (NumberFilter takes decimals)."""

    field_class = forms.IntegerField


_INTEGER_FIELDS = (models.AutoField, models.BigAutoField, models.IntegerField, models.BigIntegerField,
                   models.SmallIntegerField, models.PositiveIntegerField, models.PositiveSmallIntegerField,
                   models.PositiveBigIntegerField)


class LenientFilterSet(django_filters.FilterSet):
    """The defaults of every filter set, the API's generated ones too (``filterset_fields``):
    related objects through :class:`ObjectFilter`, integers through :class:`IntegerFilter`."""

    @classmethod
    def filter_for_lookup(cls, field, lookup_type):
        filter_class, params = super().filter_for_lookup(field, lookup_type)
        if filter_class is ObjectFilter and field.related_model is Team:
            filter_class = TeamFilter
        return filter_class, params

    FILTER_DEFAULTS = {
        **FILTER_FOR_DBFIELD_DEFAULTS,
        models.ForeignKey: {"filter_class": ObjectFilter, "extra": lambda f: {"queryset": remote_queryset(f)}},
        models.OneToOneField: {"filter_class": ObjectFilter, "extra": lambda f: {"queryset": remote_queryset(f)}},
        **{field: {"filter_class": IntegerFilter} for field in _INTEGER_FIELDS},
        models.BooleanField: {"filter_class": BooleanFilter},
        models.DateTimeField: {"filter_class": UTCDateTimeFilter},
    }


class MeshFilterSet(LenientFilterSet):
    """Adds ``q``: a case-insensitive search over ``search_fields``."""

    search_fields: tuple[str, ...] = ()
    q = django_filters.CharFilter(method="search", label="Search")

    def search(self, queryset, name, value):
        value = value.strip()
        if not value:
            return queryset
        query = reduce(or_, (Q(**{f"{field}__icontains": value}) for field in self.search_fields))
        if any("__" in field for field in self.search_fields):
            # A search through a to-many relation may repeat rows; keep each once, cheaply.
            return queryset.filter(pk__in=queryset.model.objects.filter(query).values("pk"))
        return queryset.filter(query)

    @property
    def form(self):
        form = super().form
        for field in form.fields.values():
            field.widget.attrs.setdefault(
                "class", "form-select form-select-sm" if hasattr(field, "queryset") or
                getattr(field, "choices", None) else "form-control form-control-sm")
        return form


class TeamFilterSet(MeshFilterSet):
    search_fields = ("name", "slug", "description")

    class Meta:
        model = Team
        fields = ["slug"]


class MembershipFilterSet(MeshFilterSet):
    search_fields = ("user__username", "team__name")

    class Meta:
        model = Membership
        fields = ["team", "user", "role"]


class AuditEntryFilterSet(MeshFilterSet):
    search_fields = ("object_repr", "actor_name")
    time_after = UTCDateTimeFilter(field_name="time", lookup_expr="gte", label="From")
    time_before = UTCDateTimeFilter(field_name="time", lookup_expr="lte", label="Until")
    object_type = django_filters.CharFilter(method="filter_object_type", label="Object type (app.model)")

    class Meta:
        model = AuditEntry
        fields = ["action", "actor", "team", "object_id", "request_id"]

    def filter_object_type(self, queryset, name, value):
        app_label, _, model = value.partition(".")
        return queryset.filter(object_type__app_label=app_label, object_type__model=model)
