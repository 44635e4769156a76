"""``/api/v1/`` routes of ``tracing``."""

from django.urls import path

from . import events, test_events
from .discovery import PrometheusTargetsView
from .topology import TopologyAPIView

urlpatterns: list = [
    path("events/<path:event_id>/journey/", events.JourneyAPIView.as_view(), name="event-journey"),
    path("topics/<str:name>/test-events/", test_events.TestEventsAPIView.as_view(), name="topic-test-events"),
    path("prometheus/targets/", PrometheusTargetsView.as_view(), name="prometheus-targets"),
    path("topology/", TopologyAPIView.as_view(), name="topology"),
]
