"""Pages of the rollout: runtimes and config versions (the API is in rollout.api).

The namespace was ``meshconfig`` before the rollout had its own app; the paths are the same."""

from django.urls import path

from . import views

app_name = "rollout"
urlpatterns = [
    path("runtimes/", views.runtime_list, name="runtime_list"),
    path("runtimes/<int:pk>/", views.runtime_detail, name="runtime"),
    path("stores/", views.store_status, name="store_status"),
    path("config/versions/", views.configversion_list, name="configversion_list"),
    path("config/versions/<int:pk>/", views.configversion_detail, name="configversion"),
    path("config/versions/<int:pk>/document.json", views.configversion_document, name="configversion_document"),
    path("config/versions/<int:pk>/rollback/", views.configversion_rollback, name="configversion_rollback"),
    path("config/push/", views.ConfigPushView.as_view(), name="config_push"),
]
