"""Pages of the push side (namespace ``meshconfig``); the API is in governance.runtime_api."""

from django.urls import path

from . import runtime_views as views

app_name = "meshconfig"
urlpatterns = [
    path("runtimes/", views.runtime_list, name="runtime_list"),
    path("runtimes/<int:pk>/", views.runtime_detail, name="runtime"),
    path("config/versions/", views.configversion_list, name="configversion_list"),
    path("config/versions/<int:pk>/", views.configversion_detail, name="configversion"),
    path("config/versions/<int:pk>/document.json", views.configversion_document, name="configversion_document"),
    path("config/versions/<int:pk>/rollback/", views.configversion_rollback, name="configversion_rollback"),
    path("config/push/", views.ConfigPushView.as_view(), name="config_push"),
]
