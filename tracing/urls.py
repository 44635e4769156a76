"""Pages of ``tracing`` (namespace ``tracing``)."""

from django.urls import path

from . import event_views, journey_views, live_views, metrics_views, topology_views, trace_views

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
    path("topics/<int:pk>/traffic/", metrics_views.TopicTrafficView.as_view(), name="topic_traffic"),
    # under delivery/: subscriptions/<pk>/<slug>/ is the workflow's (approve, pause, ...)
    path("subscriptions/<int:pk>/delivery/metrics/", metrics_views.SubscriptionMetricsView.as_view(),
         name="subscription_metrics"),
    path("applications/<int:pk>/traffic/", metrics_views.ApplicationTrafficView.as_view(),
         name="application_traffic"),
    path("runtimes/<int:pk>/metrics/", metrics_views.RuntimeMetricsView.as_view(), name="runtime_metrics"),
    path("metrics", metrics_views.portal_metrics_view, name="portal_metrics"),
    path("topology/", topology_views.TopologyView.as_view(), name="topology"),
]
