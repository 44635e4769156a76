"""``/api/v1/`` routes of ``tracing``."""

from django.urls import path

from . import events, test_events
from .discovery import PrometheusTargetsView

urlpatterns: list = [
    path("events/<path:event_id>/journey/", events.JourneyAPIView.as_view(), name="event-journey"),
    path("topics/<str:name>/test-events/", test_events.TestEventsAPIView.as_view(), name="topic-test-events"),
    path("prometheus/targets/", PrometheusTargetsView.as_view(), name="prometheus-targets"),
]
