"""``/api/v1/``: every app's router, one namespace."""

from django.urls import include, path

from .root import NAMESPACE, APIRootView

app_name = NAMESPACE
urlpatterns = [
    path("", APIRootView.as_view(), name="root"),
    path("", include("meshadmin.api.core")),
    path("", include("topics.api.urls")),
    path("", include("governance.api.urls")),
    path("", include("subscriptions.api.urls")),
    path("", include("rollout.api.urls")),
    path("", include("tracing.api.urls")),
]
