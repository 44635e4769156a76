"""The test suite: the real services named by DATABASE_URL and REDIS_URL, or the embedded ones."""

import os

os.environ.setdefault("MESHADMIN_EMBEDDED_REDIS", "test-redis")  # same one as tests/conftest.py
# The URL walk and schemathesis call the API thousands of times a minute; the throttling tests
# set their own rate.
os.environ.setdefault("MESH_API_RATE", "1000000/minute")

from .base import *  # noqa: E402, F403

SECRET_KEY = "test-only-" + "k" * 50
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast logins in tests only
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
WHITENOISE_AUTOREFRESH = True
WHITENOISE_USE_FINDERS = True  # a portal the tests run under uvicorn serves static/ without collectstatic
