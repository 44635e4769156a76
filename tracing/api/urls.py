"""``/api/v1/`` routes of ``tracing``."""

urlpatterns: list = []
