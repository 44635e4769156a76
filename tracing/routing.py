"""Websocket routes of ``tracing``; each consumer authorises in ``connect()`` before ``accept()``."""

from django.urls import path

from .chart_consumer import ChartConsumer

websocket_urlpatterns: list = [
    path("ws/charts/", ChartConsumer.as_asgi()),
]
