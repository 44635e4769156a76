"""Websocket routes of every app; each consumer authorises in connect() before accept()."""

from django.urls import path, re_path

from meshadmin.consumers import UnknownPathConsumer
from rollout.consumers import RuntimeConsumer
from tracing.routing import websocket_urlpatterns as tracing_websockets

websocket_urlpatterns: list = [
    path("ws/runtimes/", RuntimeConsumer.as_asgi()),
    *tracing_websockets,
    re_path(r"", UnknownPathConsumer.as_asgi()),  # last: any other path is refused, not a 500
]
