"""Pages of ``tracing`` (namespace ``tracing``)."""

from django.urls import path

from . import metrics_views

app_name = "tracing"
urlpatterns: list = [
    path("topics/<int:pk>/traffic/", metrics_views.TopicTrafficView.as_view(), name="topic_traffic"),
    # under delivery/: subscriptions/<pk>/<slug>/ is the workflow's (approve, pause, ...)
    path("subscriptions/<int:pk>/delivery/metrics/", metrics_views.SubscriptionMetricsView.as_view(),
         name="subscription_metrics"),
    path("applications/<int:pk>/traffic/", metrics_views.ApplicationTrafficView.as_view(),
         name="application_traffic"),
    path("runtimes/<int:pk>/metrics/", metrics_views.RuntimeMetricsView.as_view(), name="runtime_metrics"),
    path("metrics", metrics_views.portal_metrics_view, name="portal_metrics"),
]
