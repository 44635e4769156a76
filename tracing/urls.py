"""Pages of ``tracing`` (namespace ``tracing``)."""

from django.urls import path

from . import journey_views

app_name = "tracing"
urlpatterns: list = [
    path("events/", journey_views.JourneySearchView.as_view(), name="journey_search"),
    path("events/<path:event_id>/", journey_views.JourneyView.as_view(), name="journey"),
]
