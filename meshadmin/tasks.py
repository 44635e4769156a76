"""Mail of the review notices (meshadmin.notices), sent from Celery after the commit."""

from __future__ import annotations

import logging
from smtplib import SMTPException

from celery import shared_task
from django.core.mail import send_mail
from django.db import transaction

from . import notices

logger = logging.getLogger(__name__)


def notify(kind: str, pk: int, event: str, request) -> None:
    """E-mail the other side about ``event`` of the ``kind`` object ``pk`` once the current
    transaction commits (at once outside one)."""
    notices.check(kind, event)
    args = (kind, pk, event, request.user.pk, request.build_absolute_uri("/"))
    transaction.on_commit(lambda: send_notice.delay(*args))


@shared_task(bind=True, autoretry_for=(SMTPException, ConnectionError, TimeoutError), retry_backoff=30,
             retry_backoff_max=1800, max_retries=8)
def send_notice(self, kind: str, pk: int, event: str, actor_id: int | None, base_url: str) -> int:
    """E-mail the other side about a request or a review; returns how many recipients."""
    notice = notices.compose(kind, pk, event, actor_id, base_url)
    if notice is None:
        logger.info("%s %s is gone; no %s notice", kind, pk, event)
        return 0
    if not notice.recipients:
        logger.info("%s notice for %s %s: nobody to tell", event, kind, pk)
        return 0
    send_mail(notice.subject, notice.body, None, notice.recipients)
    logger.info("%s notice for %s %s sent to %d recipients", event, kind, pk, len(notice.recipients))
    return len(notice.recipients)
