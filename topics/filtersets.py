import django_filters

from meshadmin.filtersets import MeshFilterSet, ObjectFilter, TeamFilter
from meshadmin.models import Team

from .models import EventStore, Topic


class TopicFilterSet(MeshFilterSet):
    search_fields = ("name", "description", "tags__name")
    team = TeamFilter(queryset=Team.objects.all(), field_name="team")
    store = ObjectFilter(queryset=EventStore.objects.all(), field_name="store")
    tag = django_filters.CharFilter(field_name="tags__name", label="Tag", distinct=False, method="filter_tag")
    lifecycle = django_filters.ChoiceFilter(choices=Topic.LIFECYCLE_CHOICES)

    class Meta:
        model = Topic
        fields = ["team", "store", "lifecycle", "tag", "name"]

    def filter_tag(self, queryset, name, value):
        return queryset.filter(pk__in=Topic.objects.filter(tags__name=value.strip().lower()).values("pk"))


class EventStoreFilterSet(MeshFilterSet):
    search_fields = ("name", "description")

    class Meta:
        model = EventStore
        fields = ["kind"]
