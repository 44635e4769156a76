"""``/api/v1/`` routes of ``tracing``."""

from django.urls import path

from . import events

urlpatterns: list = [
    path("events/<path:event_id>/journey/", events.JourneyAPIView.as_view(), name="event-journey"),
]
