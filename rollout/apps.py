from django.apps import AppConfig


class RolloutConfig(AppConfig):
    name = "rollout"

    def ready(self) -> None:
        from meshadmin import audit

        from . import capture
        from .models import ConfigVersion

        # Versions are audited (a rollback names its operator); the documents are too big for the log;
        # when a version was announced, and that its document was pruned, is the push's bookkeeping.
        audit.register(ConfigVersion, exclude=("document", "diff", "changes", "published_at", "pruned"))
        capture.connect()  # every committed change to what feeds the MeshConfig schedules a push
