"""Websocket routes of every app; each consumer authorises in connect() before accept()."""

websocket_urlpatterns: list = []
