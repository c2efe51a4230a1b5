"""PrefLab settings: one module, everything read from the environment.

`PREFLAB_MODE` selects the defaults:

- ``demo`` (default): embedded runtime — SQLite, local media under ``var/``, database
  task worker, in-memory channel layer; a fixed development secret key is allowed.
- ``test``: like demo, used by the test suite.
- ``production``: ``DJANGO_SECRET_KEY`` and ``DJANGO_ALLOWED_HOSTS`` are required.

See README.md ("Configuration") for every variable.
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from config.channel_layers import redis_channel_layer
from config.env import env_bool, env_choice, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("PREFLAB_VAR_DIR", str(BASE_DIR / "var")))

MODE = env_choice("PREFLAB_MODE", "demo", ("demo", "test", "production"))

DEBUG = env_bool("DJANGO_DEBUG", default=False)
if MODE == "production":
    SECRET_KEY = env_str("DJANGO_SECRET_KEY")
    ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", [])
    if not ALLOWED_HOSTS:
        raise ImproperlyConfigured("DJANGO_ALLOWED_HOSTS is required when PREFLAB_MODE=production.")
else:
    SECRET_KEY = env_str("DJANGO_SECRET_KEY", "preflab-insecure-demo-key-never-use-in-production")
    ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["127.0.0.1", "localhost", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    # daphne first: its runserver serves HTTP and WebSocket.
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI served locally: no CDN
    "channels",
    "django_tasks",
    "django_tasks_db",
    "feedback",
    "learning",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # An async-capable WhiteNoise, so the ASGI chain has no sync middleware (see the class).
    "config.middleware.AsyncWhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

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
            ],
        },
    },
]

# --- Database -----------------------------------------------------------------------------
DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'preflab.sqlite3'}")
try:
    _db = dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 0, minimum=0))
except ValueError as exc:
    raise ImproperlyConfigured(f"DATABASE_URL is malformed: {exc}") from None
if _db["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets readers run beside the one writer; IMMEDIATE takes the write lock at BEGIN so
    # two leasing transactions serialise instead of failing with "database is locked" when a
    # read transaction tries to upgrade.
    _db["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # One test database per process, so two test runs in one checkout never share a file.
    _db.setdefault("TEST", {})["NAME"] = str(VAR_DIR / f"test-preflab-{os.getpid()}.sqlite3")
elif _db["ENGINE"] == "django.db.backends.postgresql":
    # Under ASGI each request runs in its own thread, so persistent connections pile up
    # (one per thread) until PostgreSQL refuses clients; a pool bounds them per process.
    _pool_size = env_int("DB_POOL_MAX_SIZE", 0, minimum=0)
    if _pool_size:
        if _db.get("CONN_MAX_AGE"):
            raise ImproperlyConfigured("DB_POOL_MAX_SIZE and DB_CONN_MAX_AGE cannot both be set.")
        _db.setdefault("OPTIONS", {})["pool"] = {"min_size": 1, "max_size": _pool_size, "timeout": 20}
DATABASES = {"default": _db}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis, tasks, channels -----------------------------------------------------------------
REDIS_URL = env_str("REDIS_URL", "")
TASKS_BACKEND = env_choice("PREFLAB_TASKS_BACKEND", "db", ("db", "rq", "immediate"))
if TASKS_BACKEND == "rq":
    if not REDIS_URL:
        raise ImproperlyConfigured("PREFLAB_TASKS_BACKEND=rq needs REDIS_URL.")
    INSTALLED_APPS += ["django_rq"]
    RQ_QUEUES = {name: {"URL": REDIS_URL} for name in ("default", "gpu")}
    TASKS = {"default": {"BACKEND": "django_tasks_rq.RQBackend", "QUEUES": ["default", "gpu"]}}
elif TASKS_BACKEND == "immediate":
    TASKS = {"default": {"BACKEND": "django_tasks.backends.immediate.ImmediateBackend"}}
else:
    TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default", "gpu"]}}

if REDIS_URL and env_bool("PREFLAB_REDIS_CHANNEL_LAYER", default=True):
    CHANNEL_LAYERS = {"default": redis_channel_layer(REDIS_URL)}
else:
    # In-memory layer: cannot carry messages between processes (live updates from the
    # worker need Redis); pages fall back to polling.
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# --- Auth ----------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
if MODE == "test":
    # Hashing the cast's passwords with PBKDF2 costs ~0.3 s per user; tests need no secrecy.
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "feedback:home"
LOGOUT_REDIRECT_URL = "login"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "feedback.authentication.RoleAwareTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "feedback.apis.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "PrefLab annotation protocol",
    "DESCRIPTION": "Lease pairs of agent clips, record preference judgements, import trajectories.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {"DesirabilityEnum": "feedback.models.Judgement.Desirability"},
}

# --- I18N, static, media --------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(VAR_DIR / "static")))
WHITENOISE_USE_FINDERS = True  # serve from static/ without collectstatic in demo and tests

MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(VAR_DIR / "media")))
MEDIA_URL = "media/"  # never served directly: clips go through an authenticated Range view

# Uploads: the API checks the size itself and answers 413 with a message; Django's own limit
# sits just above so oversized bodies are spooled to disk, not memory.
PREFLAB_MAX_UPLOAD_BYTES = env_int("PREFLAB_MAX_UPLOAD_BYTES", 64 * 1024 * 1024, minimum=1024)
# Compressed archives can unpack to far more than they weigh: cap what an upload may unpack to.
PREFLAB_MAX_UNPACKED_BYTES = env_int("PREFLAB_MAX_UNPACKED_BYTES", 1024 * 1024 * 1024, minimum=1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024

PREFLAB_LEASE_SECONDS = env_int("PREFLAB_LEASE_SECONDS", 600, minimum=5)
PREFLAB_DEFAULT_SEGMENT_LENGTH = env_int("PREFLAB_DEFAULT_SEGMENT_LENGTH", 50, minimum=2)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "OpenGL": {"level": "WARNING"},  # "No OpenGL_accelerate module loaded" on every start
    },
}

VAR_DIR.mkdir(parents=True, exist_ok=True)
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
