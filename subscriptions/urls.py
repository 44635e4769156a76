from django.urls import path

from meshadmin.views.generic import model_urls

from . import views

app_name = "subscriptions"
urlpatterns = [
    *model_urls("subscription", list_view=views.SubscriptionListView, detail_view=views.SubscriptionView,
                edit_view=views.SubscriptionEditView, delete_view=views.SubscriptionDeleteView,
                history_view=views.SubscriptionHistoryView),
    path("subscriptions/<int:pk>/<slug:step>/", views.SubscriptionTransitionView.as_view(),
         name="subscription_transition"),
    path("inbox/", views.inbox, name="inbox"),
]
