"""Websocket routes of every app; each consumer authorises in connect() before accept()."""

from django.urls import path

from rollout.consumers import RuntimeConsumer

websocket_urlpatterns: list = [
    path("ws/runtimes/", RuntimeConsumer.as_asgi()),
]
