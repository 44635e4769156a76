"""Websocket routes of ``tracing``; each consumer authorises in ``connect()`` before ``accept()``
and closes a refused socket with a code the page explains (``tracing.consumers``)."""

from django.urls import path

from .chart_consumer import ChartConsumer
from .consumers import RefusalsConsumer, TailConsumer

websocket_urlpatterns: list = [
    path("ws/tracing/topics/<int:pk>/tail/", TailConsumer.as_asgi()),
    path("ws/tracing/refusals/", RefusalsConsumer.as_asgi(), {"kind": "all"}),
    path("ws/tracing/topics/<int:pk>/refusals/", RefusalsConsumer.as_asgi(), {"kind": "topic"}),
    path("ws/tracing/applications/<int:pk>/refusals/", RefusalsConsumer.as_asgi(), {"kind": "application"}),
    path("ws/charts/", ChartConsumer.as_asgi()),
]
