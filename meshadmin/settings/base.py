"""Settings shared by every deployment; the modules beside this one set what differs.

Services are named by URL in the environment. Without ``DATABASE_URL`` the portal uses SQLite in
the data folder; without ``REDIS_URL`` it uses a private Redis (embedded mode), so the embedded
mode runs the same code paths as production. Importing the settings starts nothing: the commands
that use the private Redis start it (``meshadmin.embedded.private_redis``).
"""

from __future__ import annotations

from pathlib import Path

import dj_database_url
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

from meshadmin.embedded import default_data_dir, redis_url
from meshruntime.keys import DEFAULT_PREFIX

from .env import env_bool, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent.parent
DATA_DIR = default_data_dir()

DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_str("SECRET_KEY")  # each deployment module decides how to handle its absence
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "channels",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "meshadmin",
    "topics",
    "subscriptions",
    "governance",
    "rollout",
    "tracing",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "meshadmin.middleware.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "meshadmin.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "meshadmin.middleware.RequestContextMiddleware",
    "meshadmin.middleware.RefuseNullCharacters",
]

ROOT_URLCONF = "meshadmin.urls"
WSGI_APPLICATION = "meshadmin.wsgi.application"
ASGI_APPLICATION = "meshadmin.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "meshadmin.context_processors.navigation",
                "meshadmin.context_processors.inbox",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL") or f"sqlite:///{DATA_DIR / 'meshadmin.sqlite3'}",
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Several processes (portal, worker, beat) share the file: wait for locks instead of failing.
    # Write-ahead logging lets them read while one writes, and commits without rewriting pages
    # twice (which made recording a large config version several times slower).
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20, "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

#: The private Redis's folder when REDIS_URL names none (embedded mode), else None.
EMBEDDED_REDIS_DIR = None if env_str("REDIS_URL") else DATA_DIR / env_str("MESHADMIN_EMBEDDED_REDIS", "redis")
REDIS_URL = env_str("REDIS_URL") or redis_url(EMBEDDED_REDIS_DIR)
MESH_KEY_PREFIX = env_str("MESH_KEY_PREFIX", DEFAULT_PREFIX)
# The event stores the portal reads and acts on (topics/engines.py): NAME=URL items separated by
# spaces, as a runtime's --store; the connection "default" is REDIS_URL unless given here.
MESH_STORES = env_str("MESH_STORES", "")
# Config push and runtime registry (rollout.push, rollout.registry).
# A change after a quiet spell is pushed after this delay (0: at once); a change within the
# burst window of the last version is part of a burst, waits the burst delay and shares the
# next version with every change made meanwhile (rollout.capture.enqueue_push).
MESH_PUSH_DELAY_MS = env_int("MESH_PUSH_DELAY_MS", 0)
MESH_PUSH_BURST_WINDOW_MS = env_int("MESH_PUSH_BURST_WINDOW_MS", 250)
MESH_PUSH_BURST_DELAY_MS = env_int("MESH_PUSH_BURST_DELAY_MS", 1000)
MESH_PUSH_QUEUE = env_str("MESH_PUSH_QUEUE", "celery")
MESH_RUNTIME_STALE_SECONDS = env_int("MESH_RUNTIME_STALE_SECONDS", 30)  # three missed heartbeats
MESH_RUNTIME_GONE_SECONDS = env_int("MESH_RUNTIME_GONE_SECONDS", 600)
# A gone runtime's row is deleted after this much silence: every restart is a new runtime id.
MESH_RUNTIME_FORGET_SECONDS = env_int("MESH_RUNTIME_FORGET_SECONDS", 86_400)
# Config versions older than the newest this many keep their record but not their document (0: all).
MESH_CONFIG_KEEP_DOCUMENTS = env_int("MESH_CONFIG_KEEP_DOCUMENTS", 1000)
# Events (tracing): seconds the journey of a test event sent from the portal is kept (the
# runtimes' own is their --journey-ttl), and how many stored events one filtered search of the
# event browser reads at most before it says how far it got.
MESH_JOURNEY_TTL = env_int("MESH_JOURNEY_TTL", 86_400)
MESH_EVENT_SCAN_LIMIT = env_int("MESH_EVENT_SCAN_LIMIT", 10_000)
# Watching events (tracing: the live tail and the refusals panels).
MESH_TAIL_RATE = env_int("MESH_TAIL_RATE", 50)  # events a second a viewer is sent at most
MESH_TAIL_BUFFER = env_int("MESH_TAIL_BUFFER", 500)  # rows a browser keeps, oldest dropped
MESH_TAP_WATCH_TTL = env_int("MESH_TAP_WATCH_TTL", 5)  # seconds a watch key lives unless renewed
MESH_TAP_WATCH_GRACE = env_int("MESH_TAP_WATCH_GRACE", 2)  # seconds a channel outlives its last viewer
# Seconds between checks that a viewer's session, account and rights still hold (changes made
# through the portal are noticed at once; this catches the rest, such as an expired session).
MESH_TAIL_RECHECK_SECONDS = env_int("MESH_TAIL_RECHECK_SECONDS", 10)
for _name in ("MESH_TAIL_RATE", "MESH_TAIL_BUFFER", "MESH_TAP_WATCH_TTL", "MESH_TAIL_RECHECK_SECONDS"):
    if globals()[_name] < 1:
        raise ImproperlyConfigured(f"{_name}={globals()[_name]} must be at least 1.")
if MESH_TAP_WATCH_GRACE < 0:
    raise ImproperlyConfigured(f"MESH_TAP_WATCH_GRACE={MESH_TAP_WATCH_GRACE} must be 0 or more.")

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "meshadmin-cache",
    }
}
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        # A consumer waits for its next message with a 5 s BZPOPMIN; redis-py's default read timeout
        # is 5 s too, so a socket quiet for 5 s died of a TimeoutError. No read timeout, as before
        # redis-py had one: the server answers every BZPOPMIN within its 5 s (a read timeout of its
        # own also made a cancelled receive linger, holding a closing consumer).
        "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": None}], "prefix": "meshadmin-channels"},
    }
}

# Celery's Redis transport spells a Unix socket (the private Redis's) redis+socket://.
CELERY_BROKER_URL = "redis+socket://" + REDIS_URL.removeprefix("unix://") if REDIS_URL.startswith("unix://") \
    else REDIS_URL
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_TRANSPORT_OPTIONS = {"global_keyprefix": "meshadmin-celery:"}
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BEAT_SCHEDULE: dict = {}
CELERY_BEAT_SCHEDULE["reconcile-mesh-config"] = {"task": "rollout.tasks.reconcile_config", "schedule": 30.0}
CELERY_BEAT_SCHEDULE["prune-config-documents"] = {"task": "rollout.tasks.prune_config_documents",
                                                  "schedule": 3600.0}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Sign-in and API throttling (meshadmin.throttling says why it is shaped like this).
AUTHENTICATION_BACKENDS = ["meshadmin.throttling.ThrottledModelBackend"]
MESH_TRUSTED_PROXIES = env_int("MESH_TRUSTED_PROXIES", 0)  # proxies in front whose X-Forwarded-For we trust
MESH_LOGIN_FREE_FAILURES = env_int("MESH_LOGIN_FREE_FAILURES", 5)  # per account and address, then back-off
MESH_LOGIN_BACKOFF_MAX_SECONDS = env_int("MESH_LOGIN_BACKOFF_MAX_SECONDS", 900)
MESH_LOGIN_ADDRESS_FAILURES = env_int("MESH_LOGIN_ADDRESS_FAILURES", 50)  # per address and window, any account
MESH_LOGIN_ADDRESS_WINDOW_SECONDS = env_int("MESH_LOGIN_ADDRESS_WINDOW_SECONDS", 900)
MESH_API_AUTH_FAILURES = env_int("MESH_API_AUTH_FAILURES", 20)  # wrong API tokens per address and minute
MESH_API_RATE = env_str("MESH_API_RATE", "1200/minute")  # API calls per token (or user, or address)

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "meshadmin:home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend")
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "meshadmin@localhost")

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # The token scheme comes first so that anonymous API requests get 401 with a challenge.
        "meshadmin.api.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["meshadmin.api.permissions.TokenScopePermission"],
    # JSON (without NUL characters); forms are still read (an empty POST of an action), but only
    # JSON is documented (SPECTACULAR_SETTINGS["PARSER_WHITELIST"]).
    "DEFAULT_PARSER_CLASSES": ["meshadmin.api.parsers.JSONParser", "rest_framework.parsers.FormParser",
                               "rest_framework.parsers.MultiPartParser"],
    "DEFAULT_PAGINATION_CLASS": "meshadmin.api.pagination.StrictLimitOffsetPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": [
        "meshadmin.api.filters.MeshFilterBackend",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_THROTTLE_CLASSES": ["meshadmin.api.throttling.TokenRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {"api": MESH_API_RATE},
    "NUM_PROXIES": MESH_TRUSTED_PROXIES or None,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "meshadmin.api.exceptions.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Meshadmin API",
    "DESCRIPTION": "Govern the event mesh: topics, subscriptions, applications, rules and runtimes.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["meshadmin.api.permissions.TokenScopePermission"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "PARSER_WHITELIST": ["meshadmin.api.parsers.JSONParser"],
    "ENUM_NAME_OVERRIDES": {"ConfigVersionKindEnum": "rollout.models.ConfigVersion.KIND_CHOICES"},
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums",
                             "meshadmin.api.schema.add_error_responses"],
}

# Pages load only the portal's own static files: no inline script, event handler or style
# attribute anywhere (data reaches scripts through data-* attributes and json_script), so the
# policy needs no 'unsafe-inline'. Images also allow data: URIs, which is how Bootstrap's CSS
# draws its icons (select arrows, check marks, close buttons); an image cannot run code.
# The websocket origin of the request's own host is added per request (connect-src).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    },
}

PROMETHEUS_URL = env_str("PROMETHEUS_URL", "")
# Charts (tracing, docs/metrics.md): a deadline on every query, so a slow Prometheus never hangs a
# page; the scrape interval sets the charts' finest step and their rate windows; a reason shown
# on every chart when no Prometheus could be had (the demo sets it).
PROMETHEUS_TIMEOUT_SECONDS = env_int("PROMETHEUS_TIMEOUT_SECONDS", 3)
PROMETHEUS_SCRAPE_INTERVAL = env_int("PROMETHEUS_SCRAPE_INTERVAL", 15)
PROMETHEUS_UNAVAILABLE = env_str("PROMETHEUS_UNAVAILABLE", "")
# Where Prometheus scrapes the portal's own /metrics (the service discovery lists it); empty:
# where Prometheus reached the discovery endpoint.
MESH_PORTAL_METRICS_URL = env_str("MESH_PORTAL_METRICS_URL", "")
SKYWALKING_URL = env_str("SKYWALKING_URL", "")  # the OAP, e.g. http://oap:12800 (docs/tracing.md)
SKYWALKING_UI_URL = env_str("SKYWALKING_UI_URL", "")  # linked to; "{trace_id}" in it links to the trace
SKYWALKING_TIMEOUT = env_int("SKYWALKING_TIMEOUT", 3)  # seconds a query to the OAP may take

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
}
