from django.apps import AppConfig


class TracingConfig(AppConfig):
    """Watching the mesh: live tail, event browser, journeys, test events, charts, topology, traces.

    Its pages hang off the catalog's objects as tabs (``meshadmin.tabs``), registered here, so the
    apps it observes never import it.
    """

    name = "tracing"

    def ready(self) -> None:
        from . import signals, tabs

        tabs.register_all()
        signals.connect()
