from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from meshadmin.views import core, generic

app_patterns = (
    [
        path("", core.home, name="home"),
        *generic.model_urls("team", list_view=core.TeamListView, detail_view=core.TeamView,
                            edit_view=core.TeamEditView, delete_view=core.TeamDeleteView),
        *generic.model_urls("membership", list_view=core.MembershipListView, detail_view=core.MembershipView,
                            edit_view=core.MembershipEditView, delete_view=core.MembershipDeleteView),
        path("audit/", core.AuditEntryListView.as_view(), name="auditentry_list"),
        path("audit/<int:pk>/", core.AuditEntryView.as_view(), name="auditentry"),
        path("tokens/", core.APITokenListView.as_view(), name="apitoken_list"),
        path("tokens/<int:pk>/delete/", core.APITokenDeleteView.as_view(), name="apitoken_delete"),
    ],
    "meshadmin",
)

urlpatterns = [
    path("", include(app_patterns)),
    path("", include("topics.urls")),
    path("", include("governance.urls")),
    path("", include("subscriptions.urls")),
    path("", include("rollout.urls")),
    path("", include("tracing.urls")),
    # Login and health are the only pages anonymous visitors reach (LoginRequiredMiddleware).
    path("login/", core.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("healthz", core.healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("api/v1/", include("meshadmin.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # The split view serves its init script from a URL of its own, so the page has no inline script;
    # GET only: its HTML renderer has nothing to render an OPTIONS answer with (a 500 before).
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="schema", template_name="api/swagger_ui.html",
                                                         http_method_names=["get", "head"]),
         name="api-docs"),
]

handler404 = core.not_found
