"""Production: every secret from the environment, HTTPS only; ``check --deploy`` stays clean.

``MESHADMIN_ALLOW_PLAIN_HTTP=true`` is for a stack on one's own machine without TLS in front
(docker-compose.yml's default): cookies without the Secure flag, no redirect to HTTPS, no HSTS.
It must be said explicitly; without it a browser on plain HTTP could not even sign in, since it
drops Secure cookies there.
"""

from .env import env_bool, env_int, env_required

# Production names its services; it never falls back to SQLite or a private Redis.
env_required("DATABASE_URL")
env_required("REDIS_URL")

from .base import *  # noqa: E402, F403

DEBUG = False
SECRET_KEY = env_required("SECRET_KEY")
ALLOW_PLAIN_HTTP = env_bool("MESHADMIN_ALLOW_PLAIN_HTTP", False)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not ALLOW_PLAIN_HTTP)
SECURE_HSTS_SECONDS = 0 if ALLOW_PLAIN_HTTP else env_int("SECURE_HSTS_SECONDS", 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not ALLOW_PLAIN_HTTP
SECURE_HSTS_PRELOAD = not ALLOW_PLAIN_HTTP
SESSION_COOKIE_SECURE = not ALLOW_PLAIN_HTTP
CSRF_COOKIE_SECURE = not ALLOW_PLAIN_HTTP
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
