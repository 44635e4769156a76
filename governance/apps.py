from django.apps import AppConfig


class GovernanceConfig(AppConfig):
    name = "governance"

    def ready(self) -> None:
        from meshadmin import audit

        from .models import AccessRule, Application, ApplicationKey, RoutingRule

        audit.register(Application)
        audit.register(ApplicationKey, exclude=("sha256",))  # never a key's digest in the log
        audit.register(AccessRule)
        audit.register(RoutingRule)

        from meshadmin.workflow import transition_checked
        from subscriptions.models import Subscription

        from . import notifications  # noqa: F401 - registers the routing rule notices (for the worker too)
        from .rules import refuse_denied_subscription

        # no approval or resumption of a subscription the access policy would hold (every path:
        # pages, API, admin)
        transition_checked.connect(refuse_denied_subscription, sender=Subscription, dispatch_uid="subscribe-denied")
