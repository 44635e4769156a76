"""Websocket routes of every app; each consumer authorises in connect() before accept()."""

from django.urls import path

from rollout.consumers import RuntimeConsumer
from tracing.routing import websocket_urlpatterns as tracing_websockets

websocket_urlpatterns: list = [
    path("ws/runtimes/", RuntimeConsumer.as_asgi()),
    *tracing_websockets,
]
