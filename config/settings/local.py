"""Development settings: `make run` and manage.py default to these."""
import os

from .base import *  # noqa: F403
from .base import SECRET_KEY, env_bool

DEBUG = env_bool("DEBUG", True)
# A fixed development key keeps sessions valid across restarts; production
# refuses to start with anything like it (see production.py).
SECRET_KEY = SECRET_KEY or "django-insecure-devshare-local-only"

# `make run` starts a moto DynamoDB here; moto accepts any credentials.
DYNAMODB_ENDPOINT_URL = DYNAMODB_ENDPOINT_URL or "http://127.0.0.1:8001"  # noqa: F405
AWS_ACCESS_KEY_ID = AWS_ACCESS_KEY_ID or "local"  # noqa: F405
AWS_SECRET_ACCESS_KEY = AWS_SECRET_ACCESS_KEY or "local"  # noqa: F405

# A fixed, public development key for signing keys at rest; production refuses it.
SIGNING_KEY_ENCRYPTION_KEYS = SIGNING_KEY_ENCRYPTION_KEYS or [DEV_SIGNING_KEY_ENCRYPTION_KEY]  # noqa: F405

# The local AWS IoT Core `make run` starts (`manage.py run_local_iot`,
# docs/local-iot.md): its TLS port serves MQTT with ALPN `mqtt`, wss `/mqtt`
# and HTTPS, as AWS's 443 does, so the credentials API's `endpoint`,
# `mqttUsername` and `wssUrl` work against it unchanged.
IOT_ENDPOINT = IOT_ENDPOINT or "localhost:18443"  # noqa: F405
# local_iot's data plane (plain HTTP on its --http-port); it takes SigV4 under
# the access key id `local`, as set above.
IOT_DATA_ENDPOINT_URL = os.environ.get("IOT_DATA_ENDPOINT_URL") or "http://127.0.0.1:18080"
