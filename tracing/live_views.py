"""Pages of ``tracing``: the Live tab of topics and subscriptions, the Refused tab of applications.

Each is a tab of the object's page (``tracing.tabs``); the live content comes over websockets
(``tracing.consumers``), so a page only says where to connect and what the user may see.
"""

from __future__ import annotations

from typing import Any

import orjson
from django.conf import settings

from governance.models import Application
from meshadmin.views.generic import ObjectDetailView
from subscriptions.models import Subscription
from topics.models import Topic

from .access import may_see_payload, visible_topics
from .links import journey_url_template


def tail_config(request, topic: Topic, *, filters: list | None = None, text: str = "") -> dict[str, Any]:
    """What the tail's script needs (``static/tracing/live.js``), as JSON in the page."""
    return {
        "socket": f"/ws/tracing/topics/{topic.pk}/tail/",
        "topic": topic.name,
        "payload": may_see_payload(request.user, topic),
        "rate": settings.MESH_TAIL_RATE,
        "buffer": settings.MESH_TAIL_BUFFER,
        "filters": filters or [],
        "text": text,
        "journey_url": journey_url_template(),
    }


class TopicLiveView(ObjectDetailView):
    """The topic's events as they happen, and its refusals. ``?filters=<JSON>`` and ``?q=<text>``
    start it filtered; ``?subscription=<pk>`` with that subscription's filters."""

    queryset = Topic.objects.all()
    template_name = "tracing/topic_live.html"
    tab = "live"

    def get_queryset(self, request):
        return visible_topics(request.user).select_related("team", "store")

    def extra_context(self, request, obj) -> dict:
        filters: list = []
        problem = note = None
        if "subscription" in request.GET:
            pk = request.GET["subscription"]
            found = (Subscription.objects.restrict(request.user).select_related("application")
                     .filter(pk=pk, topic=obj).first()) if pk.isdigit() else None
            if found is None:
                problem = f"subscription: no subscription {pk!r} to {obj.name} that you may see; showing every event."
            else:
                filters = found.filters or []
                note = f"Showing what {found.subscription_id} ({found.application}) would receive."
        elif request.GET.get("filters"):
            try:
                filters = orjson.loads(request.GET["filters"])
            except orjson.JSONDecodeError as error:
                problem = f"filters: not valid JSON ({error}); showing every event."
        return {"tail": tail_config(request, obj, filters=filters, text=request.GET.get("q", "")),
                "tail_note": note, "tail_problem": problem}


class SubscriptionLiveView(ObjectDetailView):
    """What a subscription would receive, live: its topic's tail with its filters applied."""

    queryset = Subscription.objects.all()
    template_name = "tracing/subscription_live.html"
    tab = "live"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("topic", "application")

    def extra_context(self, request, obj) -> dict:
        topic = visible_topics(request.user).filter(pk=obj.topic_id).first()
        return {"tail": tail_config(request, topic, filters=obj.filters or []) if topic else None,
                "tail_note": f"Events of {obj.topic} that {obj.subscription_id} would receive: its filters "
                             "are applied on the server."}


class ApplicationRefusedView(ObjectDetailView):
    """The application's refused publishes, live."""

    queryset = Application.objects.all()
    template_name = "tracing/application_refused.html"
    tab = "refused"
