"""Background work of subscriptions: the e-mail about a request or a review (subscriptions.notifications
says who is told what)."""

from __future__ import annotations

import logging
from smtplib import SMTPException

from celery import shared_task
from django.core.mail import send_mail
from django.db import transaction

from .models import Subscription
from .notifications import EVENTS, compose

logger = logging.getLogger(__name__)


@shared_task(bind=True, autoretry_for=(SMTPException, ConnectionError, TimeoutError), retry_backoff=30,
             retry_backoff_max=1800, max_retries=8)
def send_subscription_notice(self, subscription_id: int, event: str, actor_id: int | None, base_url: str) -> int:
    """E-mail the other side about a request or a review; returns how many recipients."""
    subscription = (Subscription.objects.select_related("application__team", "topic__team")
                    .filter(pk=subscription_id).first())
    if subscription is None:
        logger.info("subscription %s is gone; no %s notice", subscription_id, event)
        return 0
    notice = compose(subscription, event, actor_id, base_url)
    if not notice.recipients:
        logger.info("%s notice for sub-%s: nobody to tell", event, subscription_id)
        return 0
    send_mail(notice.subject, notice.body, None, notice.recipients)
    logger.info("%s notice for sub-%s sent to %d recipients", event, subscription_id, len(notice.recipients))
    return len(notice.recipients)


def notify(subscription: Subscription, event: str, request) -> None:
    """E-mail the other side about ``event`` once the current transaction commits."""
    if event not in EVENTS:
        raise ValueError(f"unknown event {event!r}")
    args = (subscription.pk, event, request.user.pk, request.build_absolute_uri("/"))
    transaction.on_commit(lambda: send_subscription_notice.delay(*args))
