"""Production: every secret from the environment, HTTPS only; ``check --deploy`` stays clean."""

from .env import env_bool, env_int, env_required

# Production names its services; it never falls back to SQLite or a private Redis.
env_required("DATABASE_URL")
env_required("REDIS_URL")

from .base import *  # noqa: E402, F403

DEBUG = False
SECRET_KEY = env_required("SECRET_KEY")
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
