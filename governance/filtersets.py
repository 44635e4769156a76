import django_filters
from django.db.models import Q
from django.utils import timezone

from meshadmin.filtersets import MeshFilterSet, TeamFilter
from meshadmin.models import Team

from .models import AccessRule, Application, ApplicationKey, RoutingRule


class ApplicationFilterSet(MeshFilterSet):
    search_fields = ("name", "description", "contact")
    team = TeamFilter(queryset=Team.objects.all())

    class Meta:
        model = Application
        fields = ["team", "name"]


class ApplicationKeyFilterSet(MeshFilterSet):
    ACTIVE, EXPIRED, REVOKED = "active", "expired", "revoked"

    search_fields = ("prefix", "description", "application__name")
    application = django_filters.CharFilter(field_name="application__name", label="Application")
    status = django_filters.ChoiceFilter(
        choices=[(ACTIVE, "Active"), (EXPIRED, "Expired"), (REVOKED, "Revoked")], method="filter_status")

    class Meta:
        model = ApplicationKey
        fields = ["application", "status", "prefix"]

    def filter_status(self, queryset, name, value):
        now = timezone.now()
        if value == self.REVOKED:
            return queryset.filter(revoked__isnull=False)
        if value == self.EXPIRED:
            return queryset.filter(revoked__isnull=True, expires__lte=now)
        return queryset.filter(Q(expires__isnull=True) | Q(expires__gt=now), revoked__isnull=True)


class AccessRuleFilterSet(MeshFilterSet):
    search_fields = ("topic_pattern", "description")
    team = TeamFilter(queryset=Team.objects.all(), label="Managed by")
    application = django_filters.CharFilter(field_name="principal_application__name", label="Application")
    action = django_filters.ChoiceFilter(choices=[("publish", "Publish"), ("subscribe", "Subscribe")],
                                         method="filter_action")

    class Meta:
        model = AccessRule
        fields = ["team", "effect", "principal_kind", "application", "principal_team", "action", "topic_pattern"]

    def filter_action(self, queryset, name, value):
        return queryset.filter(**{value: True})


class RoutingRuleFilterSet(MeshFilterSet):
    search_fields = ("source_pattern", "description")
    team = TeamFilter(queryset=Team.objects.all(), label="Managed by")
    target = django_filters.CharFilter(method="filter_target", label="Target topic")

    class Meta:
        model = RoutingRule
        fields = ["team", "enabled", "state", "source_team", "target", "source_pattern"]

    def filter_target(self, queryset, name, value):
        return queryset.filter(pk__in=RoutingRule.objects.filter(targets__name=value.strip()).values("pk"))
