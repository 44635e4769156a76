from django.apps import AppConfig


class MeshadminConfig(AppConfig):
    name = "meshadmin"
    verbose_name = "Meshadmin"

    def ready(self) -> None:
        from django.contrib.auth import get_user_model

        from . import audit
        from .models import APIToken, Membership, Team

        audit.register(Team)
        audit.register(Membership)
        # Users: staff and superuser grants, groups, permissions, activation; a password change
        # shows as a changed fingerprint; sign-ins have their own entries, not last_login's.
        audit.register(get_user_model(), exclude=("last_login",), redact=("password",))
        # Tokens created and revoked; never their digest, nor the last use (bookkeeping).
        audit.register(APIToken, exclude=("digest", "last_used"))
        audit.connect()
