"""What the topic page's side column shows: subscribers, the Subscribe form, who may publish and subscribe."""

from __future__ import annotations

from django import template

from governance.models import Application
from governance.rules import current_policy
from governance.simulator import who_may
from governance.validation import subscription_findings
from meshadmin.querysets import CHANGE

from ..forms import QUICK_FIELDS, SubscriptionForm
from ..models import Subscription

register = template.Library()


@register.simple_tag(takes_context=True)
def topic_panel(context, topic) -> dict:
    user = context["request"].user
    policy = current_policy()
    subscriptions = Subscription.objects.restrict(user).filter(topic=topic)
    may_request = Application.objects.restrict(user, CHANGE).exists()
    return {
        "subscriptions": subscriptions.select_related("application").order_by("application__name", "-created"),
        "form": SubscriptionForm(user=user, initial={"topic": topic.pk}) if may_request else None,
        "quick_fields": QUICK_FIELDS,
        "who_may": who_may(topic.name, policy),
        "findings": subscription_findings(subscriptions, policy),
    }
