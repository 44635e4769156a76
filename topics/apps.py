from django.apps import AppConfig


class TopicsConfig(AppConfig):
    name = "topics"

    def ready(self) -> None:
        from meshadmin import audit

        from .models import EventStore, Topic

        for model in (EventStore, Topic):  # tags are recorded in the topic snapshots
            audit.register(model)
