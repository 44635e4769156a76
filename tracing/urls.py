"""Pages of ``tracing`` (namespace ``tracing``)."""

from django.urls import path

from . import event_views, journey_views, live_views, trace_views

app_name = "tracing"
urlpatterns: list = [
    path("events/", journey_views.JourneySearchView.as_view(), name="journey_search"),
    path("events/<path:event_id>/", journey_views.JourneyView.as_view(), name="journey"),
    path("topics/<int:pk>/events/", event_views.TopicEventsView.as_view(), name="topic_events"),
    path("topics/<int:pk>/test-event/", event_views.TestEventView.as_view(), name="test_event"),
    path("traces/events/<path:event_id>/", trace_views.EventTraceView.as_view(), name="event_trace"),
    path("topics/<int:pk>/traces/", trace_views.TopicTracesView.as_view(), name="topic_traces"),
    path("applications/<int:pk>/traces/", trace_views.ApplicationTracesView.as_view(), name="application_traces"),
    path("topics/<int:pk>/live/", live_views.TopicLiveView.as_view(), name="topic_live"),
    # not under subscriptions/<pk>/: subscriptions/<pk>/<step>/ is the workflow's
    path("live/subscriptions/<int:pk>/", live_views.SubscriptionLiveView.as_view(), name="subscription_live"),
    path("applications/<int:pk>/refused/", live_views.ApplicationRefusedView.as_view(), name="application_refused"),
]
