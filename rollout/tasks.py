"""Celery tasks of the config push (rollout.push explains the protocol).

The push tasks take nothing and are idempotent: each compiles the database as it is when it runs
and publishes only a changed content. Their outcome is recorded in ``push:status`` (shown on the
config versions page) and, when they publish, as a ConfigVersion.

Their names are ``rollout.tasks.*`` (``governance.tasks.*`` before the rollout had its own app).
A worker drops a message whose task it does not know ("Received unregistered task"), so a push
queued under the old name before an upgrade never runs. Nothing is lost with it: the next
reconcile (every 30 s) publishes what the database holds and clears the pending marker that
push left, after which every change enqueues its own push again.
"""

from __future__ import annotations

import logging

from celery import shared_task

from . import push

log = logging.getLogger(__name__)

LOCK_RETRY_SECONDS = 0.2


@shared_task(bind=True, acks_late=True, max_retries=None, ignore_result=True)
def push_config(self) -> dict:
    """Compile and publish after committed changes. If another push holds the lock, run again
    shortly: changes committed during that push may not be in what it compiled."""
    try:
        return push.push("push").as_dict()
    except push.PushBusy:
        raise self.retry(countdown=LOCK_RETRY_SECONDS) from None


@shared_task(ignore_result=True)
def reconcile_config() -> dict:
    """Periodic (CELERY_BEAT_SCHEDULE): repair a lost push, an unsignalled change (bulk update,
    expired key) and a Redis that lost the snapshots. Skipped while another push runs, which
    leaves things consistent too; the next beat comes soon."""
    try:
        return push.push("reconcile").as_dict()
    except push.PushBusy:
        log.info("reconcile skipped: a push is in progress")
        return {"outcome": "skipped"}


@shared_task(ignore_result=True)
def prune_config_documents() -> int:
    """Periodic (CELERY_BEAT_SCHEDULE): drop the documents of versions older than the newest
    ``MESH_CONFIG_KEEP_DOCUMENTS``; their records stay."""
    return push.prune_documents()
