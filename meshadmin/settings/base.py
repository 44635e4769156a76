"""Settings shared by every deployment; the modules beside this one set what differs.

Services are named by URL in the environment. Without ``DATABASE_URL`` the portal uses SQLite in
the data folder; without ``REDIS_URL`` it starts a private Redis (embedded mode), so the embedded
mode runs the same code paths as production.
"""

from __future__ import annotations

from pathlib import Path

import dj_database_url

from meshadmin.embedded import default_data_dir, ensure_redis
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

REDIS_URL = env_str("REDIS_URL") or ensure_redis(DATA_DIR / env_str("MESHADMIN_EMBEDDED_REDIS", "redis"))
MESH_KEY_PREFIX = env_str("MESH_KEY_PREFIX", DEFAULT_PREFIX)
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
        "CONFIG": {"hosts": [REDIS_URL], "prefix": "meshadmin-channels"},
    }
}

CELERY_BROKER_URL = REDIS_URL
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

PROMETHEUS_URL = env_str("PROMETHEUS_URL", "")
SKYWALKING_URL = env_str("SKYWALKING_URL", "")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
}
