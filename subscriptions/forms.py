from __future__ import annotations

from django import forms

from governance.forms import FiltersField
from meshadmin.forms import MeshModelForm
from meshadmin.querysets import CHANGE

from .models import Subscription

#: What the "Subscribe" form on a topic page asks; the rest keeps the defaults.
QUICK_FIELDS = ("application", "webhook_url", "delivery_mode")


class SubscriptionForm(MeshModelForm):
    """Request a subscription for one of your teams' applications, or change its delivery settings.

    The topic and the application are chosen once: changing them would be a new request.
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
        else:
            self.fields["application"].help_text = "One of your teams' applications."

    def save(self, commit=True):
        if self.instance.pk is None:
            self.instance.requested_by = self.user
        return super().save(commit)


class ReviewForm(forms.Form):
    comment = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2, "class": "form-control"}),
                              help_text="Required to reject; the requesting team reads it.")
