from meshadmin.views import generic

from . import filtersets, forms, tables
from .models import EventStore, Topic


class TopicListView(generic.ObjectListView):
    queryset = Topic.objects.select_related("team", "store").prefetch_related("tags")
    filterset = filtersets.TopicFilterSet
    columns = tables.TOPIC_COLUMNS
    default_ordering = "name"


class TopicView(generic.ObjectDetailView):
    queryset = Topic.objects.select_related("team", "store").prefetch_related("tags")
    template_name = "topics/topic.html"


class TopicEditView(generic.ObjectEditView):
    queryset = Topic.objects.all()
    form_class = forms.TopicForm


class TopicDeleteView(generic.ObjectDeleteView):
    queryset = Topic.objects.all()


class EventStoreListView(generic.ObjectListView):
    queryset = EventStore.objects.all()
    filterset = filtersets.EventStoreFilterSet
    columns = tables.EVENTSTORE_COLUMNS
    default_ordering = "name"


class EventStoreView(generic.ObjectDetailView):
    queryset = EventStore.objects.all()
    template_name = "topics/eventstore.html"


class EventStoreEditView(generic.ObjectEditView):
    queryset = EventStore.objects.all()
    form_class = forms.EventStoreForm


class EventStoreDeleteView(generic.ObjectDeleteView):
    queryset = EventStore.objects.all()
