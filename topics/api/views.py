from meshadmin.api.views import MeshModelViewSet

from ..filtersets import EventStoreFilterSet, TopicFilterSet
from ..models import EventStore, Topic
from .serializers import EventStoreSerializer, TopicSerializer


class TopicViewSet(MeshModelViewSet):
    queryset = Topic.objects.select_related("team", "store").prefetch_related("tags").order_by("name")
    serializer_class = TopicSerializer
    filterset_class = TopicFilterSet
    ordering_fields = ["name", "created", "updated", "lifecycle"]


class EventStoreViewSet(MeshModelViewSet):
    queryset = EventStore.objects.order_by("name")
    serializer_class = EventStoreSerializer
    filterset_class = EventStoreFilterSet
