"""A topic's event pages: "Send test event" (a header button) and the "Events" tab (the browser)."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.urls import reverse

from meshadmin.views import generic
from topics.models import Topic

from . import browser, eventstore
from .access import PUBLIC_ATTRIBUTES, may_see_payload
from .forms import EventSearchForm, TestEventForm
from .test_events import Answer, BadEvent, send, sender_applications

NOT_A_SENDER = ("You may send test events only as an application of a team you own or are a member of; "
                "you are neither in any team that has an application.")


def may_send(user, topic: Topic | None = None) -> bool:
    """Whether ``user`` has an application to send test events as (the access rules decide the rest)."""
    return sender_applications(user).exists()


class TestEventView(generic.ObjectDetailView):
    """GET: the form, pre-filled from the topic's example event. POST: the runtime's answer, with
    the form again (status: the answer's, or 400 for input that is not an event)."""

    __test__ = False  # not a pytest class, whatever its name

    queryset = Topic.objects.select_related("team", "store")
    template_name = "tracing/test_event.html"
    tab = "test_event"
    form: TestEventForm | None = None
    answer: Answer | None = None

    def extra_context(self, request, obj) -> dict:
        if not may_send(request.user):
            raise PermissionDenied(NOT_A_SENDER)
        form = self.form or TestEventForm(user=request.user, topic=obj)
        return {"form": form, "answer": self.answer, "schema": obj.data_schema}

    def post(self, request, pk):
        topic = self.get_object(request, pk)
        if not may_send(request.user):
            raise PermissionDenied(NOT_A_SENDER)
        self.form = TestEventForm(request.POST, user=request.user, topic=topic)
        if self.form.is_valid():
            try:
                self.answer = send(topic, self.form.test_event(), user=request.user)
            except BadEvent as error:
                self.form.add_error(error.field if error.field in self.form.fields else None, str(error))
        response = self.get(request, pk)
        response.status_code = self.answer.status if self.answer is not None else 400
        return response


class TopicEventsView(generic.SearchTabMixin, generic.ObjectDetailView):
    """The "Events" tab: what the topic's store holds, newest first, a page at a time."""

    queryset = Topic.objects.select_related("team", "store")
    template_name = "tracing/topic_events.html"
    tab = "events"

    def extra_context(self, request, obj) -> dict:
        form = EventSearchForm(request.GET)
        payload = may_see_payload(request.user, obj)
        keep = request.GET.copy()
        for place in ("before", "after", "at", "id"):
            keep.pop(place, None)
        context = {"form": form, "payload_visible": payload, "page_size": browser.PAGE, "keep": keep.urlencode(),
                   "scan_limit": settings.MESH_EVENT_SCAN_LIMIT,
                   "tab_url": reverse("tracing:topic_events", args=[obj.pk])}
        if form.is_valid() and not payload:
            hidden = sorted(browser.filter_attributes(form.cleaned_data["filters"]) - set(PUBLIC_ATTRIBUTES))
            if hidden:
                form.add_error("filters", f"You see this topic's public attributes only "
                                          f"({', '.join(PUBLIC_ATTRIBUTES)}), so filters cannot name "
                                          f"{', '.join(hidden)}.")
        if not form.is_valid():
            self.bad_search = True
            return {**context, "page": None}
        try:
            page = browser.browse(obj, form.cleaned_data, payload_visible=payload)
        except eventstore.StoreUnavailable as error:
            return {**context, "page": None, "unavailable": str(error)}
        return {**context, "page": page}
