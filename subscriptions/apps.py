from django.apps import AppConfig


class SubscriptionsConfig(AppConfig):
    name = "subscriptions"

    def ready(self) -> None:
        from meshadmin import audit

        from .models import Subscription, SubscriptionChange

        audit.register(Subscription, exclude=("signing_secret",))
        audit.register(SubscriptionChange)

        from . import notifications  # noqa: F401 - registers the subscription notices (for the worker too)
