from __future__ import annotations

from django.contrib import messages
from django.contrib.contenttypes.models import ContentType
from django.core.paginator import Paginator
from django.shortcuts import redirect, render

from governance.models import RoutingRule
from governance.validation import findings_for
from meshadmin.models import AuditEntry
from meshadmin.views import generic
from meshadmin.views.workflow import TransitionView

from . import filtersets, forms, tables
from .models import APPLICATION_SIDE, Subscription, SubscriptionChange
from .notifications import notify, notify_change

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
        change = obj.pending_change()
        return {
            "change": change,
            "change_steps": change.available_transitions(request.user, sides) if change else [],
            "past_changes": obj.changes.exclude(state=SubscriptionChange.REQUESTED)
                               .select_related("requested_by", "reviewed_by")[:10],
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

    #: The change request the edit of an approved subscription became (Subscription.save_edit).
    change = None

    def save(self, request, form, created):
        subscription = super().save(request, form, created)
        if created:
            notify(subscription, "requested", request)
        elif form.change is not None:
            notify_change(form.change, "requested", request)
        self.change = form.change
        return subscription

    def saved(self, request, obj, created):
        if created:
            messages.success(request, f"Requested {obj}: {obj.topic.team} reviews it.")
            return redirect(obj.get_absolute_url())
        if self.change is not None:
            changed = ", ".join(label.lower() for label, _before, _after in self.change.fields)
            messages.info(request, f"The change of {changed} awaits the approval of {obj.topic.team}; "
                                   "the approved settings keep delivering until then.")
            return redirect(obj.get_absolute_url())
        return super().saved(request, obj, created)


class SubscriptionChangeTransitionView(TransitionView):
    """POST approve, reject or withdraw a change of an approved subscription."""

    queryset = SubscriptionChange.objects.select_related("subscription__application__team",
                                                         "subscription__topic__team")
    detail_view = None  # the change has no page of its own: its subscription's page shows it
    row_template = "subscriptions/change_inbox_row.html"
    row_name = "change"
    notified = NOTIFIED

    def notify(self, request, obj, event):
        notify_change(obj, event, request)

    def refused(self, request, obj, status):
        view = SubscriptionView()
        view.setup(request, pk=obj.subscription_id)
        response = view.get(request, obj.subscription_id)
        response.status_code = status
        return response


class SubscriptionDeleteView(generic.ObjectDeleteView):
    queryset = Subscription.objects.all()


class SubscriptionTransitionView(TransitionView):
    """POST approve, reject, pause, resume or revoke (meshadmin.views.workflow)."""

    queryset = Subscription.objects.select_related("application__team", "topic__team")
    detail_view = SubscriptionView
    row_template = "subscriptions/inbox_row.html"
    row_name = "sub"
    notified = NOTIFIED

    def notify(self, request, obj, event):
        notify(obj, event, request)

    def label(self, obj) -> str:
        return obj.subscription_id


def inbox(request):
    """What awaits a decision from the user's teams, with approve and reject in place: requests
    to subscribe to their topics, changes of approved subscriptions to them (as a diff), and
    routing rules that read their topics."""
    pending = (Subscription.objects.awaiting_review_by(request.user)
               .select_related("application__team", "topic__team", "requested_by").order_by("created"))
    changes = (SubscriptionChange.objects.awaiting_review_by(request.user)
               .select_related("subscription__application__team", "subscription__topic__team", "requested_by")
               .order_by("created"))
    routes = (RoutingRule.objects.awaiting_review_by(request.user)
              .select_related("team", "source_team", "requested_by").prefetch_related("targets").order_by("created"))
    return render(request, "subscriptions/inbox.html",
                  {"pending": pending, "changes": changes, "routes": routes, "review_form": forms.ReviewForm()})
