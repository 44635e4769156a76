"""FilterSets shared by the pages and the API (one per model, as in NetBox)."""

from __future__ import annotations

from functools import reduce
from operator import or_

import django_filters
from django.db.models import Q

from .models import AuditEntry, Membership, Team


class MeshFilterSet(django_filters.FilterSet):
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
    time_after = django_filters.IsoDateTimeFilter(field_name="time", lookup_expr="gte", label="From")
    time_before = django_filters.IsoDateTimeFilter(field_name="time", lookup_expr="lte", label="Until")
    object_type = django_filters.CharFilter(method="filter_object_type", label="Object type (app.model)")

    class Meta:
        model = AuditEntry
        fields = ["action", "actor", "team", "object_id", "request_id"]

    def filter_object_type(self, queryset, name, value):
        app_label, _, model = value.partition(".")
        return queryset.filter(object_type__app_label=app_label, object_type__model=model)
