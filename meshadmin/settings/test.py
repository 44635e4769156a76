"""The test suite: the real services named by DATABASE_URL and REDIS_URL, or the embedded ones."""

import os

# pytest-xdist's workers share one Redis (and start their own embedded one when none is named):
# each worker's keys, caches, channel groups and Celery queues live under a name of its own. Set in
# the environment, so runtimes the tests start as processes inherit the worker's key prefix.
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
os.environ.setdefault("MESHADMIN_EMBEDDED_REDIS", f"test-redis{'-' + WORKER if WORKER else ''}")
if WORKER:
    os.environ.setdefault("MESH_KEY_PREFIX", f"mesh-{WORKER}:")
# The URL walk and schemathesis call the API thousands of times a minute; the throttling tests
# set their own rate.
os.environ.setdefault("MESH_API_RATE", "1000000/minute")

from .base import *  # noqa: E402, F403

if WORKER:
    CACHES["default"]["KEY_PREFIX"] += f"-{WORKER}"  # noqa: F405
    CHANNEL_LAYERS["default"]["CONFIG"]["prefix"] += f"-{WORKER}"  # noqa: F405
    CELERY_BROKER_TRANSPORT_OPTIONS = {"global_keyprefix": f"meshadmin-celery-{WORKER}:"}

SECRET_KEY = "test-only-" + "k" * 50
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast logins in tests only
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
WHITENOISE_AUTOREFRESH = True
WHITENOISE_USE_FINDERS = True  # a portal the tests run under uvicorn serves static/ without collectstatic
