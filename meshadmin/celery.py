"""The Celery app. A worker or beat on the embedded defaults (no ``REDIS_URL``) runs the private
Redis, its broker, for as long as it runs: the settings only name it."""

import atexit
import contextlib
import os

from celery import Celery, signals
from django.conf import settings

from meshadmin.embedded import using_private_redis

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "meshadmin.settings.dev")

app = Celery("meshadmin")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

_private_redis = contextlib.ExitStack()


@signals.worker_init.connect
@signals.beat_init.connect
def _start_private_redis(**_kwargs) -> None:
    _private_redis.enter_context(using_private_redis(settings.EMBEDDED_REDIS_DIR))
    atexit.register(_private_redis.close)  # beat has no shutdown signal


@signals.worker_shutdown.connect
def _stop_private_redis(**_kwargs) -> None:
    _private_redis.close()  # after the pool's processes, which hold its lock too, have ended
