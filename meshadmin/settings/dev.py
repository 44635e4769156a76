"""The embedded default: one machine, SQLite and a private Redis, demo e-mail on the console."""

from .base import *  # noqa: F403
from .base import DATA_DIR

DEBUG = True
SECRET_KEY = SECRET_KEY or "embedded-mode-only-" + "x" * 40  # noqa: F405 - never used in production
EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
DATA_DIR.mkdir(parents=True, exist_ok=True)
WHITENOISE_AUTOREFRESH = True  # serve static files from the source folders, no collectstatic
