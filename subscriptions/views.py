from __future__ import annotations

from django.contrib import messages
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db import transaction
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.views import View

from governance.validation import findings_for
from meshadmin.models import AuditEntry
from meshadmin.views import generic

from . import filtersets, forms, tables
from .models import APPLICATION_SIDE, Subscription, TransitionRefused
from .tasks import notify

#: Steps that e-mail the other side, and the event they announce.
NOTIFIED = {"approve": "approved", "reject": "rejected"}


class SubscriptionListView(generic.ObjectListView):
    queryset = Subscription.objects.select_related("application", "topic", "mqtt_store")
    filterset = filtersets.SubscriptionFilterSet
    columns = tables.SUBSCRIPTION_COLUMNS
    default_ordering = "-created"


class SubscriptionView(generic.ObjectDetailView):
    queryset = Subscription.objects.select_related("application__team", "topic__team", "requested_by",
                                                   "reviewed_by")
    template_name = "subscriptions/subscription.html"

    def extra_context(self, request, obj) -> dict:
        sides = obj.sides(request.user)
        steps = obj.available_transitions(request.user, sides)
        return {
            "steps": [step for step in steps if step not in ("approve", "reject")],
            "may_review": "approve" in steps,
            "review_form": forms.ReviewForm(),
            # The subscriber verifies signatures with it; the topic's side has no use for it.
            "show_secret": APPLICATION_SIDE in sides,
            "findings": findings_for(obj),
        }


class SubscriptionHistoryView(SubscriptionView, generic.ObjectHistoryView):
    """Whoever may see the subscription (either side) sees its whole history: the audit log files
    it under the application's team, which would hide it from the topic's team."""

    template_name = "generic/object_history.html"
    tab = "history"

    def extra_context(self, request, obj) -> dict:
        entries = AuditEntry.objects.filter(object_type=ContentType.objects.get_for_model(obj),
                                            object_id=str(obj.pk)).select_related("object_type")
        return {"entries": Paginator(entries, 50).get_page(request.GET.get("page"))}


class SubscriptionEditView(generic.ObjectEditView):
    """Request a subscription (the other side is told by e-mail) or change its delivery settings."""

    queryset = Subscription.objects.select_related("application", "topic")
    form_class = forms.SubscriptionForm

    def save(self, request, form, created):
        subscription = super().save(request, form, created)
        if created:
            notify(subscription, "requested", request)
        return subscription

    def saved(self, request, obj, created):
        if not created:
            return super().saved(request, obj, created)
        messages.success(request, f"Requested {obj}: {obj.topic.team} reviews it.")
        return redirect(obj.get_absolute_url())


class SubscriptionDeleteView(generic.ObjectDeleteView):
    queryset = Subscription.objects.all()


class SubscriptionTransitionView(View):
    """POST approve, reject, pause, resume or revoke. The model decides who may and when; a refusal
    answers 403 or 409 with its reason (in the inbox row, for htmx, with 200 so that it shows)."""

    def post(self, request, pk, step):
        if step not in Subscription.TRANSITIONS:
            raise Http404("No such step.")
        subscription = get_object_or_404(
            Subscription.objects.restrict(request.user).select_related("application__team", "topic__team"), pk=pk)
        error, status = None, 200
        try:
            with transaction.atomic():
                subscription.transition(step, by=request.user, comment=request.POST.get("comment", ""))
                if step in NOTIFIED:
                    notify(subscription, NOTIFIED[step], request)
        except TransitionRefused as exc:
            error, status = str(exc), exc.status
        except ValidationError as exc:
            error, status = " ".join(exc.messages), 400
        done = Subscription.TRANSITIONS[step].done
        if request.htmx:
            return render(request, "subscriptions/inbox_row.html",
                          {"sub": subscription, "error": error, "done": None if error else done, "oob": True})
        if error:
            messages.error(request, error)
            view = SubscriptionView()
            view.setup(request, pk=pk)
            response = view.get(request, pk)
            response.status_code = status
            return response
        messages.success(request, f"Subscription {subscription.subscription_id} {done}.")
        return redirect(generic.safe_return_url(request, subscription.get_absolute_url()))


def inbox(request):
    """Requests that await a decision from the user's teams, with approve and reject in place."""
    pending = (Subscription.objects.awaiting_review_by(request.user)
               .select_related("application__team", "topic__team", "requested_by").order_by("created"))
    return render(request, "subscriptions/inbox.html", {"pending": pending, "review_form": forms.ReviewForm()})
