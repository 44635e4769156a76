"""``/api/v1/`` routes of ``tracing``."""

from django.urls import path

from .discovery import PrometheusTargetsView

urlpatterns: list = [
    path("prometheus/targets/", PrometheusTargetsView.as_view(), name="prometheus-targets"),
]
