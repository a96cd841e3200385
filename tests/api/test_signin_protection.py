"""Sign-in brute force (issue 12, item 1): the client address is the socket
peer unless proxies are trusted, accounts and addresses lock out on the API
and the console alike (django-axes), and every sign-in event is audited
without a password or a token."""
import json
import subprocess
import sys

import pytest
from axes.models import AccessAttempt
from django.conf import settings as django_settings
from rest_framework.test import APIClient

from devices.models import AuditEvent, User
from tests.support.api import assert_error, rates, url
from tests.support.paths import ROOT

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse"  # noqa: S105
LIMIT = django_settings.AXES_FAILURE_LIMIT  # the default from config/settings/base.py, not raised for tests


@pytest.fixture
def pat(db):
    return User.objects.create_user(email="pat@example.test", password=PASSWORD)


@pytest.fixture
def no_throttle(settings):
    """The auth throttle out of the way, so that only the lockout answers."""
    rates(settings, auth="100000/minute")


def sign_in(email="pat@example.test", password=PASSWORD, ip="203.0.113.7", **headers):
    return APIClient(REMOTE_ADDR=ip, **headers).post(url("token-obtain"), {"email": email, "password": password})


def console_sign_in(client, email="pat@example.test", password=PASSWORD, ip="203.0.113.7"):
    return client.post("/admin/login/?next=/admin/", {"username": email, "password": password}, REMOTE_ADDR=ip)


def test_the_default_trusts_no_proxy():
    assert django_settings.TRUSTED_PROXY_COUNT == 0
    assert django_settings.REST_FRAMEWORK["NUM_PROXIES"] == 0
    assert LIMIT == 10


def test_trusted_proxies_come_from_the_environment():
    code = ("import django; django.setup(); from django.conf import settings; "
            "print(settings.REST_FRAMEWORK['NUM_PROXIES'], settings.TRUSTED_PROXY_COUNT)")
    env = {"DJANGO_SETTINGS_MODULE": "config.settings.test", "TRUSTED_PROXY_COUNT": "2", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True,
                         cwd=ROOT)
    assert out.stdout.split() == ["2", "2"]


def test_a_rotating_x_forwarded_for_does_not_escape_the_auth_throttle(settings, pat):
    """The attack as reproduced: 40 wrong passwords, each with another
    X-Forwarded-For, all from one socket address."""
    settings.AXES_FAILURE_LIMIT = 1000  # the throttle alone, here
    rates(settings, auth="20/minute")
    codes = [sign_in(password="wrong", HTTP_X_FORWARDED_FOR=f"198.51.100.{i}").status_code for i in range(40)]
    assert codes == [401] * 20 + [429] * 20
    assert_error(sign_in(HTTP_X_FORWARDED_FOR="198.51.100.250"), 429, "throttled")


def test_with_a_trusted_proxy_the_address_it_appended_is_the_client(settings, pat):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    settings.AXES_FAILURE_LIMIT = 1000
    rates(settings, auth="2/minute")
    # The client's own entry (left) is ignored; the proxy's (right-most) counts.
    for forged in ("1.1.1.1", "2.2.2.2"):
        assert sign_in(password="wrong", HTTP_X_FORWARDED_FOR=f"{forged}, 198.51.100.1").status_code == 401
    assert_error(sign_in(password="wrong", HTTP_X_FORWARDED_FOR="3.3.3.3, 198.51.100.1"), 429, "throttled")
    assert sign_in(HTTP_X_FORWARDED_FOR="198.51.100.2").status_code == 200
    assert AuditEvent.objects.get(action="auth.sign_in").ip_address == "198.51.100.2"


def test_the_api_locks_an_account_out_whatever_the_address(pat, no_throttle):
    for i in range(LIMIT - 1):
        assert_error(sign_in(password="wrong", ip=f"198.51.100.{i}"), 401, "no_active_account")
    # The failure that reaches the limit is already answered as a lockout.
    assert_error(sign_in(password="wrong", ip="198.51.100.200"), 429, "locked_out")
    response = sign_in(ip="192.0.2.44")  # the right password, from a fresh address
    body = assert_error(response, 429, "locked_out")
    assert "Too many failed sign-ins" in body["detail"]
    assert int(response["Retry-After"]) == django_settings.AXES_COOLOFF_TIME.total_seconds()
    # Any case of the address is the same account.
    assert_error(sign_in(email="PAT@Example.TEST", ip="192.0.2.45"), 429, "locked_out")
    # Another account is not affected.
    User.objects.create_user(email="sam@example.test", password=PASSWORD)
    assert sign_in(email="sam@example.test", ip="192.0.2.46").status_code == 200


def test_the_api_locks_an_address_out_whatever_the_account(pat, no_throttle):
    for i in range(LIMIT):
        sign_in(email=f"guess{i}@example.test", password="wrong", ip="198.51.100.9")
    assert_error(sign_in(ip="198.51.100.9"), 429, "locked_out")
    assert sign_in(ip="198.51.100.10").status_code == 200  # pat, from elsewhere


def test_the_console_locks_out_too(client, no_throttle):
    admin = User.objects.create_superuser(email="root@example.test", password=PASSWORD)
    for i in range(LIMIT - 1):
        assert console_sign_in(client, email=admin.email, password="wrong", ip=f"198.51.100.{i}").status_code == 200
    assert console_sign_in(client, email=admin.email, password="wrong", ip="198.51.100.99").status_code == 429
    response = console_sign_in(client, email=admin.email, ip="192.0.2.1")
    assert response.status_code == 429
    assert "_auth_user_id" not in client.session
    assert client.get("/admin/").status_code == 302  # still to the login page


def test_console_and_api_count_the_same_failures(client, pat, no_throttle):
    for i in range(LIMIT):
        sign_in(password="wrong", ip=f"198.51.100.{i}")
    pat.is_staff = True
    pat.save()
    assert console_sign_in(client, ip="192.0.2.1").status_code == 429


# --- audit -------------------------------------------------------------------------


def test_sign_in_refresh_and_sign_out_are_audited_with_the_socket_address(pat):
    tokens = sign_in(ip="192.0.2.10", HTTP_X_FORWARDED_FOR="6.6.6.6").json()
    refreshed = APIClient(REMOTE_ADDR="192.0.2.11").post(url("token-refresh"), {"refresh": tokens["refresh"]})
    assert refreshed.status_code == 200
    out = APIClient(REMOTE_ADDR="192.0.2.12").post(url("logout"), {"refresh": refreshed.json()["refresh"]})
    assert out.status_code == 204
    events = list(AuditEvent.objects.order_by("id").values_list("action", "actor", "ip_address", "source", "tenant"))
    assert events == [
        ("auth.sign_in", pat.pk, "192.0.2.10", "api", None),
        ("auth.token_refresh", pat.pk, "192.0.2.11", "api", None),
        ("auth.sign_out", pat.pk, "192.0.2.12", "api", None),
    ]
    assert_no_secret_in_audit([PASSWORD, tokens["access"], tokens["refresh"], refreshed.json()["refresh"]])


def test_failed_sign_ins_are_audited_without_an_actor_or_the_password(pat, no_throttle):
    sign_in(password="wrong-horse", ip="192.0.2.20")
    sign_in(email="Nobody@Example.test", password="wrong-horse", ip="192.0.2.21")
    known, unknown = AuditEvent.objects.filter(action="auth.sign_in_failed").order_by("id")
    assert (known.actor, known.actor_email, known.tenant, known.object_id) == (None, "", None, str(pat.pk))
    assert known.changes == {"email": "pat@example.test", "locked_out": False}
    assert known.ip_address == "192.0.2.20"
    assert (unknown.actor, unknown.object_id, unknown.changes["email"]) == (None, "", "nobody@example.test")
    assert_no_secret_in_audit(["wrong-horse"])


def test_a_lockout_is_audited_as_such(pat, no_throttle):
    for i in range(LIMIT):
        sign_in(password="wrong", ip=f"198.51.100.{i}")
    sign_in(ip="192.0.2.1")
    flags = list(AuditEvent.objects.filter(action="auth.sign_in_failed").order_by("id")
                 .values_list("changes__locked_out", flat=True))
    assert flags == [False] * (LIMIT - 1) + [True, True]
    assert not AuditEvent.objects.filter(action="auth.sign_in").exists()


def test_console_sign_in_and_out_are_audited(client):
    admin = User.objects.create_superuser(email="root@example.test", password=PASSWORD)
    assert console_sign_in(client, email=admin.email, password="nope", ip="192.0.2.30").status_code == 200
    assert console_sign_in(client, email=admin.email, ip="192.0.2.31").status_code == 302
    assert client.post("/admin/logout/", REMOTE_ADDR="192.0.2.32").status_code == 200
    events = list(AuditEvent.objects.order_by("id").values_list("action", "actor", "ip_address", "source"))
    assert events == [
        ("auth.sign_in_failed", None, "192.0.2.30", "admin"),
        ("auth.sign_in", admin.pk, "192.0.2.31", "admin"),
        ("auth.sign_out", admin.pk, "192.0.2.32", "admin"),
    ]
    assert_no_secret_in_audit([PASSWORD, "nope"])
    # axes keeps the failed form's fields, with the password masked.
    attempts = json.dumps(list(AccessAttempt.objects.values()), default=str)
    assert "password" in attempts and "nope" not in attempts


def test_tenant_admins_do_not_see_sign_in_events(world, pat, no_throttle):
    sign_in(ip="192.0.2.40")
    sign_in(password="wrong", ip="192.0.2.41")
    assert not AuditEvent.objects.visible_to(world.admin).filter(action__startswith="auth.").exists()
    # Their own successful sign-ins people may see; failures nobody but superusers.
    assert list(AuditEvent.objects.visible_to(pat).values_list("action", flat=True)) == ["auth.sign_in"]


def assert_no_secret_in_audit(secrets):
    dumped = json.dumps(list(AuditEvent.objects.values()), default=str)
    for secret in secrets:
        assert secret not in dumped
