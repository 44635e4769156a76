import django_filters
from django.db.models import Q

from meshadmin.filtersets import BooleanFilter, MeshFilterSet, TeamFilter
from meshadmin.models import Team

from .models import Subscription


class SubscriptionFilterSet(MeshFilterSet):
    search_fields = ("topic__name", "application__name", "webhook_url")
    state = django_filters.ChoiceFilter(choices=Subscription.STATE_CHOICES)
    topic = django_filters.CharFilter(field_name="topic__name", label="Topic")
    application = django_filters.CharFilter(field_name="application__name", label="Application")
    team = TeamFilter(queryset=Team.objects.all(), method="filter_team", label="Team (either side)")
    awaiting_review = BooleanFilter(method="filter_awaiting_review",
                                                   label="Awaiting my review")

    class Meta:
        model = Subscription
        fields = ["state", "topic", "application", "team", "delivery_mode", "awaiting_review"]

    def filter_team(self, queryset, name, value):
        return queryset.filter(Q(application__team=value) | Q(topic__team=value))

    def filter_awaiting_review(self, queryset, name, value):
        mine = Subscription.objects.awaiting_review_by(self.request.user).values("pk")
        return queryset.filter(pk__in=mine) if value else queryset.exclude(pk__in=mine)
