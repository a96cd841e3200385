"""Settings shared by every environment; every knob comes from the environment.

See ``.env.example`` at the repository root for the full list.
"""
import os
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent.parent


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


SECRET_KEY = os.environ.get("SECRET_KEY", "")
DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework_simplejwt.token_blacklist",
    "django_filters",
    "drf_spectacular",
    "devices",
    "authz",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "devices.middleware.AuditContextMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "config" / "templates"],
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

# SQLite is the embedded default for `make run` on a bare machine only; CI and
# production set DATABASE_URL to PostgreSQL.
DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or f"sqlite:///{BASE_DIR / 'db.sqlite3'}",
        conn_max_age=int(os.environ.get("DATABASE_CONN_MAX_AGE", "60")),
    )
}
# PostgreSQL's JIT compiles a query when its estimated cost is high, and the
# estimates for the visibility subqueries are: on the device list it spent up to
# 1,061 ms compiling a query that then ran in under 100. The app's queries are
# short OLTP reads, so its connections turn JIT off; DATABASE_JIT=true turns it
# back on (the server's own setting then applies).
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and not env_bool("DATABASE_JIT", False):
    _db_options = DATABASES["default"].setdefault("OPTIONS", {})
    _db_options["options"] = f"{_db_options.get('options', '')} -c jit=off".strip()
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_USER_MODEL = "devices.User"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "build" / "static"

# Celery: Redis is the broker. `filesystem://` (a folder, no server) is the
# embedded broker `make run` falls back to; it runs every task, only slower.
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL") or REDIS_URL
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = Path(os.environ.get("CELERY_BROKER_DIR", BASE_DIR / "build" / "broker"))
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir), "data_folder_out": str(_broker_dir), "polling_interval": 0.1,
    }
    _broker_dir.mkdir(parents=True, exist_ok=True)
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_TIMEOUT = 2
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Reconnect for as long as the broker is away (Celery's default gives up after
# 100 attempts and the worker exits); config/celery_app.py keeps a reconnect
# from killing the worker.
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
CELERY_TIMEZONE = TIME_ZONE
# Django's LOGGING stays in charge inside workers too.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULE = {
    "reconcile-snapshots": {
        "task": "authz.tasks.reconcile_snapshots",
        "schedule": float(os.environ.get("SNAPSHOT_RECONCILE_SECONDS", "15")),
    },
    # Every few seconds: a share's end closes its grantee's live connections
    # at the edge (docs/live-access.md#exact-ends).
    "sweep-expired-shares": {
        "task": "authz.tasks.sweep_expired_shares",
        "schedule": float(os.environ.get("SHARE_SWEEP_SECONDS", "5")),
    },
    "reconcile-session-cuts": {
        "task": "authz.tasks.reconcile_session_cuts",
        "schedule": float(os.environ.get("SESSION_CUT_RECONCILE_SECONDS", "15")),
    },
    # Anti-entropy: a lost table, key item or snapshot item comes back without an operator.
    "check-snapshot-table": {
        "task": "authz.tasks.check_snapshot_table",
        "schedule": float(os.environ.get("SNAPSHOT_ANTIENTROPY_SECONDS", "60")),
    },
    # Each run advances at most one step and only when it is due, so hourly is
    # fine-grained enough for delays of minutes to days.
    "rotate-signing-keys": {
        "task": "authz.tasks.rotate_signing_keys",
        "schedule": float(os.environ.get("SIGNING_ROTATE_CHECK_SECONDS", "3600")),
    },
    "prune-issued-credentials": {"task": "authz.tasks.prune_issued_credentials", "schedule": 86400.0},
}

# AWS: DynamoDB holds the per-principal snapshots and the signing-key item.
# Credentials come from the usual AWS chain unless set here (local moto).
AWS_REGION = os.environ.get("AWS_REGION", "us-east-1")
AWS_ACCESS_KEY_ID = os.environ.get("AWS_ACCESS_KEY_ID") or None
AWS_SECRET_ACCESS_KEY = os.environ.get("AWS_SECRET_ACCESS_KEY") or None
DYNAMODB_ENDPOINT_URL = os.environ.get("DYNAMODB_ENDPOINT_URL") or None
DYNAMODB_TABLE = os.environ.get("DYNAMODB_TABLE", "devshare-authz")
IOT_AUTHORIZER_NAME = os.environ.get("IOT_AUTHORIZER_NAME", "")

# Snapshot pipeline (authz): see docs/snapshots.md.
SNAPSHOT_WRITE_FORMAT = int(os.environ.get("SNAPSHOT_WRITE_FORMAT", "4"))
SNAPSHOT_PUSH_BATCH = int(os.environ.get("SNAPSHOT_PUSH_BATCH", "100"))
SNAPSHOT_PUSH_CONCURRENCY = int(os.environ.get("SNAPSHOT_PUSH_CONCURRENCY", "16"))
SNAPSHOT_RETRY_BASE_SECONDS = float(os.environ.get("SNAPSHOT_RETRY_BASE_SECONDS", "1"))
SNAPSHOT_RETRY_MAX_SECONDS = float(os.environ.get("SNAPSHOT_RETRY_MAX_SECONDS", "300"))
SNAPSHOT_RECONCILE_GRACE_SECONDS = int(os.environ.get("SNAPSHOT_RECONCILE_GRACE_SECONDS", "10"))
SNAPSHOT_RECONCILE_LIMIT = int(os.environ.get("SNAPSHOT_RECONCILE_LIMIT", "10000"))
SNAPSHOT_RECONCILE_LEASE_SECONDS = int(os.environ.get("SNAPSHOT_RECONCILE_LEASE_SECONDS", "120"))
# How far back the first sweep, or one after a beat outage, looks for ended
# shares: well past the longest an open connection can hold a grant (630 s).
SNAPSHOT_SWEEP_LOOKBACK_SECONDS = 3600
# Session cuts (authz/live/): closing live connections once access narrows.
SESSION_CUT_RETRY_BASE_SECONDS = float(os.environ.get("SESSION_CUT_RETRY_BASE_SECONDS", "1"))
SESSION_CUT_RETRY_MAX_SECONDS = float(os.environ.get("SESSION_CUT_RETRY_MAX_SECONDS", "300"))
SESSION_CUT_RECONCILE_LIMIT = int(os.environ.get("SESSION_CUT_RECONCILE_LIMIT", "1000"))
SNAPSHOT_TOMBSTONE_DAYS = 30
# Outbox rows each anti-entropy beat compares with the table (BatchGetItem of pk and version).
SNAPSHOT_VERIFY_BATCH = int(os.environ.get("SNAPSHOT_VERIFY_BATCH", "1000"))

# --- Signing keys (authz/tokens/): see docs/signing-keys.md ---------------------
# Fernet keys (comma-separated): the first encrypts private keys at rest, all
# decrypt, so the encryption key rotates by prepending a new one. Local and
# test settings use a fixed development key; production refuses to start without.
SIGNING_KEY_ENCRYPTION_KEYS = env_list("SIGNING_KEY_ENCRYPTION_KEYS", "")
# base64 of "devshare-local-only-signing-key!": public, for local and test use only.
DEV_SIGNING_KEY_ENCRYPTION_KEY = "ZGV2c2hhcmUtbG9jYWwtb25seS1zaWduaW5nLWtleSE="
SIGNING_KEY_BITS = int(os.environ.get("SIGNING_KEY_BITS", "2048"))
# Stage → promote: time for the authorizer and every warm Lambda to see a new key.
SIGNING_PROPAGATION_SECONDS = int(os.environ.get("SIGNING_PROPAGATION_SECONDS", "300"))
SIGNING_ROTATION_DAYS = float(os.environ.get("SIGNING_ROTATION_DAYS", "30"))
USER_TOKEN_LIFETIME_SECONDS = int(os.environ.get("USER_TOKEN_LIFETIME_SECONDS", "3600"))
DEVICE_TOKEN_LIFETIME_SECONDS = int(os.environ.get("DEVICE_TOKEN_LIFETIME_SECONDS", "86400"))
# Promote → retire waits this long: no token signed by the old key outlives it.
TOKEN_MAX_LIFETIME_SECONDS = max(USER_TOKEN_LIFETIME_SECONDS, DEVICE_TOKEN_LIFETIME_SECONDS)
# Issued credentials (authz.IssuedCredential) are kept so that revoking access
# can later also disconnect the client ids still live with them; an expired
# row is history only (the AuditEvent of the issuance stays), so the daily
# beat task prunes rows expired longer ago than this.
ISSUED_CREDENTIALS_RETENTION_DAYS = float(os.environ.get("ISSUED_CREDENTIALS_RETENTION_DAYS", "30"))

# What credentials tell apps and devices (authz/tokens/credentials.py). Issuer,
# audience and token key name must equal the Lambda's DEVSHARE_TOKEN_ISSUER,
# DEVSHARE_TOKEN_AUDIENCE and DEVSHARE_TOKEN_KEY_NAME (docs/deploy.md#5-point-django-at-the-table).
IOT_TOKEN_ISSUER = os.environ.get("IOT_TOKEN_ISSUER", "https://devshare.local")
IOT_TOKEN_AUDIENCE = os.environ.get("IOT_TOKEN_AUDIENCE", "devshare-iot")
IOT_TOKEN_KEY_NAME = os.environ.get("IOT_TOKEN_KEY_NAME", "devshare-token")
# The name clients put in x-amz-customauthorizer-name. IOT_AUTHORIZER_NAME, when
# set, is also the authorizer whose keys the rotation updates.
IOT_CLIENT_AUTHORIZER_NAME = IOT_AUTHORIZER_NAME or "devshare"
# The unsigned authorizer compact device tokens go to (the stack's
# CompactAuthorizerName; docs/credentials.md#compact-device-tokens). It shares
# the Lambda and the token key name with the signed one.
IOT_COMPACT_AUTHORIZER_NAME = os.environ.get("IOT_COMPACT_AUTHORIZER_NAME", "devshare-compact")
# `aws iot describe-endpoint --endpoint-type iot:Data-ATS`; without it the
# credentials endpoint answers 503.
IOT_ENDPOINT = os.environ.get("IOT_ENDPOINT", "")
IOT_REGION = os.environ.get("IOT_REGION") or AWS_REGION
# Where iot-data's DeleteConnection and GetConnection go (docs/live-access.md):
# AWS serves them on the account's data endpoint. Empty: no live connection
# can be closed, and cuts wait in their outbox until it is set.
IOT_DATA_ENDPOINT_URL = os.environ.get("IOT_DATA_ENDPOINT_URL") or (f"https://{IOT_ENDPOINT}" if IOT_ENDPOINT else "")
# Goes into policy ARNs only where Django evaluates policies itself (the fit
# check on credentials, `manage.py authorize`); any 12 digits fit the same.
AWS_ACCOUNT_ID = os.environ.get("AWS_ACCOUNT_ID", "000000000000")
# --- end signing keys ---------------------------------------------------------------

# --- REST API (config/api plumbing, apps' routes, served at /api/v1/) ------------
# Apps sign in with JWTs; the browsable API uses the session. Throttle rates are
# "N/second|minute|hour|day"; the throttle counters live in the default cache,
# which CACHE_URL points at Redis so that every worker shares them.
from datetime import timedelta  # noqa: E402

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework_simplejwt.authentication.JWTAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "config.api.pagination.PageNumberPagination",
    "PAGE_SIZE": int(os.environ.get("API_PAGE_SIZE", "50")),
    "DEFAULT_SCHEMA_CLASS": "config.api.schema.AutoSchema",
    "EXCEPTION_HANDLER": "config.api.errors.exception_handler",
    "DEFAULT_THROTTLE_RATES": {
        "auth": os.environ.get("API_THROTTLE_AUTH", "20/minute"),
        "shares": os.environ.get("API_THROTTLE_SHARES", "120/minute"),
        "iot_credentials": os.environ.get("API_THROTTLE_IOT_CREDENTIALS", "30/minute"),
        # Each listing asks AWS IoT about up to 200 client ids.
        "iot_sessions": os.environ.get("API_THROTTLE_IOT_SESSIONS", "20/minute"),
    },
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}
API_MAX_PAGE_SIZE = int(os.environ.get("API_MAX_PAGE_SIZE", "1000"))

SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(seconds=int(os.environ.get("JWT_ACCESS_SECONDS", "300"))),
    "REFRESH_TOKEN_LIFETIME": timedelta(seconds=int(os.environ.get("JWT_REFRESH_SECONDS", str(14 * 86400)))),
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
    # A password change ends every session the old password opened.
    "CHECK_REVOKE_TOKEN": True,
    "UPDATE_LAST_LOGIN": True,
    "AUTH_HEADER_TYPES": ("Bearer",),
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Devshare API",
    "DESCRIPTION": "Share IoT devices with people, at a level and for a time. "
                   "Every error has the body {\"error\": code, \"detail\": message, \"fields\": {field: [messages]}}.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "ENUM_NAME_OVERRIDES": {
        "ShareLevelEnum": "lambda_bridge.vocabulary.SHARE_LEVELS",
        "AccessLevelEnum": "lambda_bridge.vocabulary.LEVELS",
    },
}

CACHES = {
    "default": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": os.environ["CACHE_URL"]}
        if os.environ.get("CACHE_URL")
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}
# --- end REST API -----------------------------------------------------------------

# --- Sign-in protection (issue 12): trusted proxies, lockout, audit ---------------
# How many reverse proxies in front of Django append to X-Forwarded-For. 0 (the
# default): the socket address is the client and X-Forwarded-For is ignored, so
# nobody picks their own address. Throttles, lockouts and audit events all use
# this one rule (devices.signin.client_ip).
TRUSTED_PROXY_COUNT = int(os.environ.get("TRUSTED_PROXY_COUNT", "0"))
REST_FRAMEWORK["NUM_PROXIES"] = TRUSTED_PROXY_COUNT
# django-axes locks sign-in on the API and the console alike: after
# LOGIN_FAILURE_LIMIT failures for one account (from anywhere) or from one
# address (for any accounts), for LOGIN_LOCKOUT_SECONDS after the last one.
# Listed before devices, so that its failure receiver runs before the audit's.
INSTALLED_APPS.insert(INSTALLED_APPS.index("devices"), "axes")
MIDDLEWARE.append("axes.middleware.AxesMiddleware")  # last, as axes requires
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # first: refuses locked-out sign-ins before any password check
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = int(os.environ.get("LOGIN_FAILURE_LIMIT", "10"))
AXES_COOLOFF_TIME = timedelta(seconds=int(os.environ.get("LOGIN_LOCKOUT_SECONDS", "900")))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]  # either one: by account, by address
AXES_CLIENT_IP_CALLABLE = "devices.signin.client_ip"
AXES_USERNAME_CALLABLE = "devices.signin.attempted_email"
# A success does not wipe the address's failures: else signing in to one's own
# account between guesses at someone else's would reset the count.
AXES_RESET_ON_SUCCESS = False
# Successes are in the audit trail (AuditEvent), not in axes' own access log too.
AXES_DISABLE_ACCESS_LOG = True
# --- end sign-in protection -----------------------------------------------------------

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
}
