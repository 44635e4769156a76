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

        from . import notifications  # noqa: F401 - registers the routing rule notices (for the worker too)
