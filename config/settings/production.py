"""Production settings: refuse to start on an unsafe configuration."""
import os

from .base import *  # noqa: F403
from .base import DEBUG, DEV_SIGNING_KEY_ENCRYPTION_KEY, SECRET_KEY, SIGNING_KEY_ENCRYPTION_KEYS, env_bool

# SystemExit with a message prints exactly that one line and stops the
# process, under manage.py, gunicorn or celery alike.
if DEBUG:
    raise SystemExit("Refusing to start: DEBUG must be off in production (unset DEBUG or set DEBUG=false).")
if len(SECRET_KEY) < 50 or SECRET_KEY.startswith("django-insecure") or len(set(SECRET_KEY)) < 5:
    raise SystemExit("Refusing to start: SECRET_KEY must be set to a random value of at least 50 characters.")
if not SIGNING_KEY_ENCRYPTION_KEYS or DEV_SIGNING_KEY_ENCRYPTION_KEY in SIGNING_KEY_ENCRYPTION_KEYS:
    raise SystemExit("Refusing to start: SIGNING_KEY_ENCRYPTION_KEYS must be set to your own Fernet key(s), "
                     "comma-separated (docs/signing-keys.md#at-rest).")
try:
    from cryptography.fernet import Fernet

    for _key in SIGNING_KEY_ENCRYPTION_KEYS:
        Fernet(_key)
except ValueError:
    raise SystemExit("Refusing to start: SIGNING_KEY_ENCRYPTION_KEYS holds a value that is not a Fernet key "
                     "(32 url-safe base64-encoded bytes).") from None

# TLS ends at the load balancer, which sets X-Forwarded-Proto.
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", "31536000"))
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_CONTENT_TYPE_NOSNIFF = True
