import os
import subprocess
import sys

import pytest
from django.db import connection

from tests.support.paths import ROOT
from tests.support.services import IN_CI

GOOD_KEY = "k" * 20 + "Zq8#x!" + "r4nd0m-ch4r5-f0r-t3st" + "9" * 10
# A Fernet key (32 bytes, url-safe base64) that is not the development one.
GOOD_FERNET_KEY = "cHJvZHVjdGlvbi10ZXN0LWtleS1ub3QtdGhlLWRldiE="


def load_production(**env):
    clean = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "DEBUG", "SIGNING_KEY_ENCRYPTION_KEYS"}}
    clean["SIGNING_KEY_ENCRYPTION_KEYS"] = GOOD_FERNET_KEY
    clean.update(env, DJANGO_SETTINGS_MODULE="config.settings.production")
    return subprocess.run([sys.executable, "-c", "import django; django.setup()"], cwd=ROOT, env=clean,
                          capture_output=True, text=True)


@pytest.mark.parametrize(
    "env, reason",
    [
        ({}, "SECRET_KEY must be set"),
        ({"SECRET_KEY": "django-insecure-" + "x" * 50}, "SECRET_KEY must be set"),
        ({"SECRET_KEY": "a" * 60}, "SECRET_KEY must be set"),
        ({"SECRET_KEY": GOOD_KEY, "DEBUG": "true"}, "DEBUG must be off"),
        ({"SECRET_KEY": GOOD_KEY, "SIGNING_KEY_ENCRYPTION_KEYS": ""}, "SIGNING_KEY_ENCRYPTION_KEYS must be set"),
        ({"SECRET_KEY": GOOD_KEY, "SIGNING_KEY_ENCRYPTION_KEYS": "ZGV2c2hhcmUtbG9jYWwtb25seS1zaWduaW5nLWtleSE="},
         "SIGNING_KEY_ENCRYPTION_KEYS must be set"),
        ({"SECRET_KEY": GOOD_KEY, "SIGNING_KEY_ENCRYPTION_KEYS": "not-a-fernet-key"}, "not a Fernet key"),
    ],
)
def test_production_refuses_unsafe_configuration(env, reason):
    result = load_production(**env)
    assert result.returncode != 0
    assert result.stderr.strip().count("\n") == 0, result.stderr  # one line, no traceback
    assert reason in result.stderr


def test_production_starts_with_a_real_key():
    result = load_production(SECRET_KEY=GOOD_KEY)
    assert result.returncode == 0, result.stderr


def test_production_accepts_several_encryption_keys():
    older = "ZGV2c2hhcmUtcm90YXRlZC1vdXQta2V5LTAwMDAwMSE="
    result = load_production(SECRET_KEY=GOOD_KEY, SIGNING_KEY_ENCRYPTION_KEYS=f"{GOOD_FERNET_KEY},{older}")
    assert result.returncode == 0, result.stderr


@pytest.mark.django_db
def test_ci_runs_on_postgresql():
    if IN_CI:
        assert connection.vendor == "postgresql"
    else:
        assert connection.vendor in {"postgresql", "sqlite"}
