"""Changes that may take away (or give) someone's sight of events, announced to open viewers.

Connected in ``TracingConfig.ready()``. Each receiver names the groups whose viewers must check
again (``tracing.notify``); the check itself decides what changed, so a receiver may announce
more than strictly needed (every save of a user, for instance, not only the deactivation).
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_out
from django.db.models.signals import post_delete, post_save

from governance.models import Application
from meshadmin.models import Membership
from subscriptions.models import Subscription
from topics.models import Topic

from .notify import application_group, notify, topic_group, user_group


def _user_changed(sender, instance, **kwargs) -> None:
    notify(user_group(instance.pk))


def _membership_changed(sender, instance, **kwargs) -> None:
    notify(user_group(instance.user_id))


def _subscription_changed(sender, instance, **kwargs) -> None:
    notify(topic_group(instance.topic_id))


def _topic_changed(sender, instance, **kwargs) -> None:
    notify(topic_group(instance.pk))


def _application_changed(sender, instance, **kwargs) -> None:
    notify(application_group(instance.pk))


def _logged_out(sender, request, user, **kwargs) -> None:
    if user is not None:
        notify(user_group(user.pk))


def connect() -> None:
    user_model = get_user_model()
    for signal in (post_save, post_delete):
        signal.connect(_user_changed, sender=user_model, dispatch_uid="tracing-user")
        signal.connect(_membership_changed, sender=Membership, dispatch_uid="tracing-membership")
        signal.connect(_subscription_changed, sender=Subscription, dispatch_uid="tracing-subscription")
        signal.connect(_topic_changed, sender=Topic, dispatch_uid="tracing-topic")
        signal.connect(_application_changed, sender=Application, dispatch_uid="tracing-application")
    user_logged_out.connect(_logged_out, dispatch_uid="tracing-logged-out")
