"""The Delivery tab of a subscription: its consumer group, its dead letters, and two actions.

Anyone who may see the subscription (either team) sees the tab. Redelivering and skipping to now
act on the subscriber's events, so they take ``change`` on the subscription (the application
team's editors, as for its delivery settings); for anyone else the subscription is 404.
"""

from __future__ import annotations

import re

import orjson
from django.contrib import messages
from django.http import HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views import View

from governance.rules import rule_url
from meshadmin.formatting import indented_json
from meshadmin.querysets import CHANGE
from meshadmin.views import generic
from meshruntime.cloudevents import loads

from . import delivery
from .models import Subscription

STREAM_ID, MAX_IDS = delivery.STREAM_ID, delivery.MAX_IDS
#: The rule a runtime names when the access policy holds a subscription (meshruntime.delivery.spec).
HELD_BY_RULE = re.compile(r"denied by rule (\S+)")


def _event(letter) -> str:
    """The dead-lettered event as it was stored, indented: its numbers keep every digit the
    producer wrote (a parsed copy would round those a double cannot hold). Its raw text when it
    is not JSON."""
    text = letter.event.decode("utf-8", "replace")
    try:
        loads(letter.event)
    except orjson.JSONDecodeError:
        return text
    return indented_json(text)


class SubscriptionDeliveryView(generic.ObjectDetailView):
    queryset = Subscription.objects.select_related("application__team", "topic__team")
    template_name = "subscriptions/delivery_panel.html"
    tab = "delivery"

    def extra_context(self, request, obj) -> dict:
        before = request.GET.get("before")
        if before is not None and not STREAM_ID.fullmatch(before):
            before = None
        try:
            state = delivery.state(obj)
            letters = delivery.dead_letters(obj, before=before, count=delivery.PAGE + 1)
        except delivery.DeliveryUnavailable as error:
            return {"unavailable": str(error)}
        more = len(letters) > delivery.PAGE
        letters = letters[: delivery.PAGE]
        held_by = HELD_BY_RULE.search(state.held) if state.held else None
        return {
            "state": state,
            "held_rule_url": rule_url(held_by.group(1)) if held_by else None,
            "letters": [(letter, _event(letter)) for letter in letters],
            "next_before": letters[-1].id if more else None,
            "paged": before is not None,
            "live": obj.state in Subscription.LIVE_STATES,
        }


class _DeliveryAction(View):
    def get_subscription(self, request, pk: int) -> Subscription:
        queryset = Subscription.objects.restrict(request.user, CHANGE).select_related("topic", "application__team")
        return get_object_or_404(queryset, pk=pk)

    def refuse_unless_live(self, request, subscription: Subscription):
        """Only an active or paused subscription has runtimes to act on (a revoked one's stream
        and group are gone): anything else is 409 with the reason."""
        if subscription.state in Subscription.LIVE_STATES:
            return None
        return HttpResponse(f"{subscription.subscription_id} is {subscription.get_state_display().lower()}: "
                            "no runtime delivers it.", status=409, content_type="text/plain")

    @staticmethod
    def back(subscription: Subscription):
        return redirect(reverse("subscriptions:subscription_delivery", args=[subscription.pk]))


class RedeliverView(_DeliveryAction):
    """POST ``dlq_id`` (one or more) or ``all=1``: those dead letters go back to this subscription."""

    def post(self, request, pk: int):
        subscription = self.get_subscription(request, pk)
        if refusal := self.refuse_unless_live(request, subscription):
            return refusal
        ids = request.POST.getlist("dlq_id")
        everything = request.POST.get("all") == "1"
        if everything == bool(ids) or len(ids) > MAX_IDS or not all(STREAM_ID.fullmatch(i) for i in ids):
            return HttpResponseBadRequest("Give either dlq_id (dead-letter ids) or all=1.")
        try:
            moved = delivery.redeliver(subscription, None if everything else ids, user=request.user)
        except delivery.DeliveryUnavailable as error:
            messages.error(request, f"Nothing was redelivered: {error}")
            return self.back(subscription)
        if moved:
            messages.success(request, f"{moved} dead letter{'s' if moved != 1 else ''} put back for "
                                      f"{subscription.subscription_id}; its runtimes deliver them shortly.")
        else:
            messages.warning(request, "Nothing to redeliver: those dead letters are gone (already put back?).")
        return self.back(subscription)


class SkipToNowView(_DeliveryAction):
    """GET asks for confirmation; POST with ``confirm=yes`` moves the group to the end of the topic."""

    template_name = "subscriptions/delivery_skip.html"

    def get(self, request, pk: int):
        subscription = self.get_subscription(request, pk)
        if refusal := self.refuse_unless_live(request, subscription):
            return refusal
        try:
            state = delivery.state(subscription)
        except delivery.DeliveryUnavailable as error:
            messages.error(request, str(error))
            return self.back(subscription)
        return render(request, self.template_name, {"object": subscription, "state": state})

    def post(self, request, pk: int):
        subscription = self.get_subscription(request, pk)
        if refusal := self.refuse_unless_live(request, subscription):
            return refusal
        if request.POST.get("confirm") != "yes":
            return HttpResponseBadRequest("Confirm with confirm=yes.")
        try:
            result = delivery.skip_to_now(subscription, user=request.user)
        except delivery.DeliveryUnavailable as error:
            messages.error(request, f"Nothing was skipped: {error}")
            return self.back(subscription)
        skipped = "an uncounted number of" if result.skipped is None else result.skipped
        messages.success(request, f"Skipped to now: {skipped} undelivered events and {result.acknowledged} "
                                  "pending ones will not be delivered.")
        return self.back(subscription)
