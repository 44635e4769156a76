"""The journey page (``/events/<id>/``) and the navigation's "event id" search.

An id without a journey the user may see is 404 with the page that says why it likely has none
(sample rate, TTL): the same answer whether no journey exists or it is on a topic the user may
not see, so the page never tells which.
"""

from __future__ import annotations

from django.shortcuts import redirect, render
from django.urls import reverse
from django.views import View

from . import eventstore, skywalking
from .journeys import explain_missing, load_journey, locate_stored
from .presenting import event_context

#: CloudEvents ids are any non-empty string; one longer than this is not worth a Redis lookup.
MAX_EVENT_ID = 1024


def too_long(event_id: str) -> str | None:
    if len(event_id) > MAX_EVENT_ID:
        return f"An event id is at most {MAX_EVENT_ID} characters; this one has {len(event_id)}."
    return None


class JourneySearchView(View):
    """``GET /events/?id=<id>`` goes to that id's journey; without one, the search form."""

    template_name = "tracing/journey_search.html"

    def get(self, request):
        event_id = request.GET.get("id", "").strip()
        if not event_id:
            error = "Give an event id." if "id" in request.GET else None
            return render(request, self.template_name, {"error": error}, status=400 if error else 200)
        if error := too_long(event_id):
            return render(request, self.template_name, {"error": error, "event_id": event_id[:80]}, status=400)
        return redirect(reverse("tracing:journey", args=[event_id]))


class JourneyView(View):
    template_name = "tracing/journey.html"
    missing_template = "tracing/journey_missing.html"

    def get(self, request, event_id: str):
        if error := too_long(event_id):
            return render(request, JourneySearchView.template_name, {"error": error, "event_id": event_id[:80]},
                          status=400)
        journey = load_journey(event_id, request.user)
        if journey is None:
            return render(request, self.missing_template, {"missing": explain_missing(event_id)}, status=404)
        store_problem = None
        try:
            locate_stored(journey)
        except eventstore.StoreUnavailable as error:
            store_problem = str(error)
        event = None
        if journey.event is not None:
            event = event_context(journey.event, journey.payload_visible)
        return render(request, self.template_name, {
            "journey": journey,
            "event": event,
            "store_problem": store_problem,
            "timeline": journey.as_dict(),
            "trace_configured": skywalking.configured(),
        })
