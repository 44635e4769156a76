from django.urls import path

from meshadmin.views.generic import model_urls

from . import views

app_name = "governance"
urlpatterns = [
    *model_urls("application", list_view=views.ApplicationListView, detail_view=views.ApplicationView,
                edit_view=views.ApplicationEditView, delete_view=views.ApplicationDeleteView),
    *model_urls("applicationkey", list_view=views.ApplicationKeyListView, detail_view=views.ApplicationKeyView,
                edit_view=views.ApplicationKeyEditView, delete_view=views.ApplicationKeyDeleteView),
    path("applicationkeys/<int:pk>/revoke/", views.ApplicationKeyRevokeView.as_view(), name="applicationkey_revoke"),
    *model_urls("accessrule", list_view=views.AccessRuleListView, detail_view=views.AccessRuleView,
                edit_view=views.AccessRuleEditView, delete_view=views.AccessRuleDeleteView),
    *model_urls("routingrule", list_view=views.RoutingRuleListView, detail_view=views.RoutingRuleView,
                edit_view=views.RoutingRuleEditView, delete_view=views.RoutingRuleDeleteView),
    path("routingrules/<int:pk>/<slug:step>/", views.RoutingRuleTransitionView.as_view(),
         name="routingrule_transition"),
    path("simulator/", views.simulator, name="simulator"),
    path("validation/", views.validation, name="validation"),
]
