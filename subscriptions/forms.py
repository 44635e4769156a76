from __future__ import annotations

from django import forms

from governance.forms import FiltersField
from meshadmin.forms import MeshModelForm, ReviewForm  # noqa: F401 - ReviewForm: the subscription pages' too
from meshadmin.querysets import CHANGE

from .models import REVIEWED_FIELDS, TOPIC_SIDE, Subscription

#: What the "Subscribe" form on a topic page asks; the rest keeps the defaults.
QUICK_FIELDS = ("application", "webhook_url", "delivery_mode")


class SubscriptionForm(MeshModelForm):
    """Request a subscription for one of your teams' applications, or change its delivery settings.

    The topic and the application are chosen once: changing them would be a new request. A change
    of what an approved subscription delivers, or where, is asked of the topic's team
    (``Subscription.save_edit``).
    """

    filters = FiltersField()
    choice_actions = {"application": CHANGE}

    class Meta:
        model = Subscription
        fields = ["topic", "application", "webhook_url", "mqtt_store", "mqtt_topic", "delivery_mode", "timeout_ms",
                  "max_attempts",
                  "backoff_base_ms", "backoff_cap_ms", "max_in_flight", "filters", "responder"]
        labels = {"timeout_ms": "Timeout (ms)", "backoff_base_ms": "Backoff base (ms)",
                  "backoff_cap_ms": "Backoff cap (ms)", "max_in_flight": "Maximum in-flight deliveries",
                  "max_attempts": "Maximum attempts", "webhook_url": "Webhook URL",
                  "responder": "Responder of the topic"}
        widgets = {"webhook_url": forms.URLInput(attrs={"placeholder": "https://billing.internal/hooks/orders"})}

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, user=user, **kwargs)
        if self.instance.pk:
            del self.fields["topic"], self.fields["application"]
            sub = self.instance
            if sub.state in Subscription.LIVE_STATES and TOPIC_SIDE not in sub.sides(user):
                for name in REVIEWED_FIELDS:
                    field = self.fields[name.removesuffix("_id")]  # mqtt_store_id is the form's mqtt_store
                    field.help_text = (f"Changing it asks {sub.topic.team} again; the approved value keeps "
                                       "delivering until they approve. " + str(field.help_text or ""))
        else:
            self.fields["application"].help_text = "One of your teams' applications."

    #: The change request an edit of an approved subscription became (Subscription.save_edit).
    change = None

    def save(self, commit=True):
        if self.instance.pk is None:
            self.instance.requested_by = self.user
            return super().save(commit)
        self.change = self.instance.save_edit(self.user)
        return self.instance
