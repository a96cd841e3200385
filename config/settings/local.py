"""Development settings: `make run` and manage.py default to these."""
from .base import *  # noqa: F403
from .base import SECRET_KEY, env_bool

DEBUG = env_bool("DEBUG", True)
# A fixed development key keeps sessions valid across restarts; production
# refuses to start with anything like it (see production.py).
SECRET_KEY = SECRET_KEY or "django-insecure-devshare-local-only"
