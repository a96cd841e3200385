"""Settings for pytest: DATABASE_URL when set, SQLite otherwise."""
from .base import *  # noqa: F403

SECRET_KEY = "test-only-secret-key-long-enough-for-hs256-jwt-signing"  # noqa: S105
DEBUG = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# The suite starts its own moto server (tests/conftest.py) and points here.
AWS_ACCESS_KEY_ID = "testing"
AWS_SECRET_ACCESS_KEY = "testing"  # noqa: S105
DYNAMODB_TABLE = "devshare-test"
# Pushes run inline unless a test starts a real worker.
CELERY_TASK_ALWAYS_EAGER = True
SNAPSHOT_RETRY_BASE_SECONDS = 0.01
LOGGING["loggers"] = {"werkzeug": {"level": "WARNING"}}  # noqa: F405  (the moto server's access log)

# A fixed, public development key for signing keys at rest; production refuses it.
SIGNING_KEY_ENCRYPTION_KEYS = SIGNING_KEY_ENCRYPTION_KEYS or [DEV_SIGNING_KEY_ENCRYPTION_KEY]  # noqa: F405
IOT_ENDPOINT = "a1b2c3d4e5f6g7-ats.iot.us-east-1.amazonaws.com"
# No data plane unless a test brings one (a Stubber, or a running local_iot).
IOT_DATA_ENDPOINT_URL = ""
SESSION_CUT_RETRY_BASE_SECONDS = 0.01
IOT_TOKEN_ISSUER = "https://devshare.test"  # noqa: S105  (an issuer URL, not a password)
AWS_ACCOUNT_ID = "123456789012"
