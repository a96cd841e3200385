"""Settings of the worker processes the live-revocation tests start: the
worker settings (tests/support/celery_settings.py), with a data plane to
close connections on (docs/live-access.md#the-disconnect-outbox)."""
import os

from tests.support.celery_settings import *  # noqa: F403

IOT_DATA_ENDPOINT_URL = os.environ.get("IOT_DATA_ENDPOINT_URL", "")
# local_iot's data plane takes SigV4 under this access key id
# (docs/local-iot.md#the-data-plane); moto, the other AWS here, takes any.
AWS_ACCESS_KEY_ID = "local"
