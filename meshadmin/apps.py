from django.apps import AppConfig


class MeshadminConfig(AppConfig):
    name = "meshadmin"
    verbose_name = "Meshadmin"

    def ready(self) -> None:
        from . import audit
        from .models import Membership, Team

        audit.register(Team)
        audit.register(Membership)
        audit.connect()
