"""Traces from SkyWalking in the portal: an event's trace on its journey page, and the "Traces"
tab of topics and applications (tracing/skywalking.py reads them from the OAP).

Who sees what follows the events' rule (tracing.access): a trace is shown where its event, topic
or application is visible, and its spans' tags and logs (which a subscriber's own agent may fill
with anything) only to someone who may see the payloads of every topic the trace touches.
"""

from __future__ import annotations

import contextlib
import json

from django.http import Http404
from django.shortcuts import render
from django.views import View

from governance.models import Application
from meshadmin.views import generic
from topics.models import Topic

from . import eventstore, skywalking
from .access import may_see_payload, visible_topics
from .forms import TraceSearchForm
from .journey_views import too_long
from .journeys import load_journey, locate_stored


def details_visible(user, trace: skywalking.Trace) -> bool:
    """Whether ``user`` may see the tags and logs of ``trace``'s spans: payload access to every
    topic its spans name (staff always)."""
    if user.is_staff or user.is_superuser:
        return True
    names = {s.tag_map["mq.topic"] for s in trace.spans if "mq.topic" in s.tag_map}
    topics = list(visible_topics(user).filter(name__in=names))
    return len(topics) == len(names) and all(may_see_payload(user, topic) for topic in topics)


def trace_context(user, trace_id: str | None, belongs=None) -> dict:
    """What the trace panel shows: the trace, or why there is none. ``belongs(trace)`` is False for
    a trace that is not this page's (it is then not shown at all)."""
    context: dict = {"trace_id": trace_id, "configured": skywalking.configured(), "ui_link": None,
                     "trace": None, "problem": None}
    if trace_id is None:
        return context
    context["ui_link"] = skywalking.ui_link(trace_id)
    try:
        trace = skywalking.load_trace(trace_id)
    except skywalking.Unavailable as error:
        context["problem"] = str(error)
        return context
    if trace is not None:
        if belongs is not None and not belongs(trace):
            context["foreign"] = True
            return context
        trace.details = details_visible(user, trace)
        context["trace"] = trace
        # In an attribute, not a json_script: the panel arrives through htmx, which (allowScriptTags
        # false, for the CSP) drops script elements from what it swaps in.
        context["trace_json"] = json.dumps(trace.as_dict(), separators=(",", ":"))
    return context


class EventTraceView(View):
    """``/traces/events/<id>/``: the trace panel of an event's journey (loaded by the journey page)."""

    def get(self, request, event_id: str):
        if too_long(event_id):
            raise Http404("no such event")
        journey = load_journey(event_id, request.user)
        if journey is None:
            raise Http404("no journey of this event that you may see")
        trace_id = skywalking.trace_id_of(journey)
        if trace_id is None and skywalking.configured():  # the stored event's sw8 may name it
            with contextlib.suppress(eventstore.StoreUnavailable):  # then the panel says there is none
                locate_stored(journey)
            trace_id = skywalking.trace_id_of(journey)
        context = {"journey": journey, **trace_context(request.user, trace_id)}
        return render(request, "tracing/event_trace.html", context)


class TracesTabView(generic.SearchTabMixin, generic.ObjectDetailView):
    """The "Traces" tab: a search of the traces of this object, and one of them opened."""

    template_name = "tracing/traces_tab.html"
    tab = "traces"

    def search(self, obj, data: dict) -> list[skywalking.TraceRow]:
        raise NotImplementedError

    def belongs(self, obj, trace: skywalking.Trace) -> bool:
        raise NotImplementedError

    def extra_context(self, request, obj) -> dict:
        form = TraceSearchForm(request.GET)
        context: dict = {"form": form, "rows": None, "search_problem": None, "configured": skywalking.configured(),
                         "ui_link": skywalking.ui_link()}
        if not form.is_valid():
            self.bad_search = True
            return context
        data = form.cleaned_data
        if context["configured"]:
            try:
                context["rows"] = self.search(obj, data)
            except skywalking.Unavailable as error:
                context["search_problem"] = str(error)
        keep = request.GET.copy()
        keep.pop("trace", None)
        context["keep"] = keep.urlencode()
        context["page"] = data["page"]
        context["opened"] = trace_context(request.user, data["trace"] or None, lambda t: self.belongs(obj, t))
        return context


class TopicTracesView(TracesTabView):
    queryset = Topic.objects.select_related("team", "store")

    def search(self, obj: Topic, data: dict) -> list[skywalking.TraceRow]:
        return skywalking.search_traces(range_key=data["range"], topic=obj.name, min_ms=data["min_ms"],
                                        max_ms=data["max_ms"], state=data["state"], page=data["page"])

    def belongs(self, obj: Topic, trace: skywalking.Trace) -> bool:
        return trace.involves_topic(obj.name)


class ApplicationTracesView(TracesTabView):
    queryset = Application.objects.select_related("team")

    def search(self, obj: Application, data: dict) -> list[skywalking.TraceRow]:
        return skywalking.search_traces(range_key=data["range"], application=obj.name, min_ms=data["min_ms"],
                                        max_ms=data["max_ms"], state=data["state"], page=data["page"])

    def belongs(self, obj: Application, trace: skywalking.Trace) -> bool:
        return trace.involves_application(obj.name)
