"""Websocket routes of ``tracing``; each consumer authorises in ``connect()`` before ``accept()``."""

websocket_urlpatterns: list = []
