"""``/api/v1/``: every app's router, one namespace."""

from django.urls import include, path

app_name = "api"
urlpatterns = [
    path("", include("meshadmin.api.core")),
    path("", include("topics.api.urls")),
    path("", include("governance.api.urls")),
    path("", include("subscriptions.api.urls")),
    path("", include("rollout.api.urls")),
    path("", include("tracing.api.urls")),
]
