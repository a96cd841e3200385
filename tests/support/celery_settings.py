"""Settings of the worker and beat processes the integration tests start:
the test settings, except that tasks go through the broker and the table is
the one the test made (the environment names it)."""
import os

from config.settings.test import *  # noqa: F403

CELERY_TASK_ALWAYS_EAGER = False
DYNAMODB_TABLE = os.environ.get("DYNAMODB_TABLE") or DYNAMODB_TABLE  # noqa: F405
