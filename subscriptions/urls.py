from django.urls import path

from meshadmin.views.generic import model_urls

from . import delivery_views, views

app_name = "subscriptions"
urlpatterns = [
    *model_urls("subscription", list_view=views.SubscriptionListView, detail_view=views.SubscriptionView,
                edit_view=views.SubscriptionEditView, delete_view=views.SubscriptionDeleteView,
                history_view=views.SubscriptionHistoryView),
    # before the transition steps, whose <slug:step> would take "delivery"
    path("subscriptions/<int:pk>/delivery/", delivery_views.SubscriptionDeliveryView.as_view(),
         name="subscription_delivery"),
    path("subscriptions/<int:pk>/delivery/redeliver/", delivery_views.RedeliverView.as_view(),
         name="subscription_redeliver"),
    path("subscriptions/<int:pk>/delivery/skip-to-now/", delivery_views.SkipToNowView.as_view(),
         name="subscription_skip_to_now"),
    path("subscriptions/<int:pk>/<slug:step>/", views.SubscriptionTransitionView.as_view(),
         name="subscription_transition"),
    path("subscriptionchanges/<int:pk>/<slug:step>/", views.SubscriptionChangeTransitionView.as_view(),
         name="subscriptionchange_transition"),
    path("inbox/", views.inbox, name="inbox"),
]
