"""Pages of ``tracing`` (namespace ``tracing``)."""

from django.urls import path

from . import views

app_name = "tracing"
urlpatterns: list = [
    path("topics/<int:pk>/live/", views.TopicLiveView.as_view(), name="topic_live"),
    # not under subscriptions/<pk>/: subscriptions/<pk>/<step>/ is the workflow's
    path("live/subscriptions/<int:pk>/", views.SubscriptionLiveView.as_view(), name="subscription_live"),
    path("applications/<int:pk>/refused/", views.ApplicationRefusedView.as_view(), name="application_refused"),
]
