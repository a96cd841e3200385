"""Development settings: `make run` and manage.py default to these."""
import os

os.environ.setdefault("DEBUG", "true")

from .base import *  # noqa: E402,F403
from .base import env_bool  # noqa: E402

DEBUG = env_bool("DEBUG", True)
# A fixed development key keeps sessions valid across restarts; production
# refuses to start with anything like it (see production.py).
SECRET_KEY = SECRET_KEY or "django-insecure-devshare-local-only"  # noqa: F405
