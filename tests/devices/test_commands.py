from io import StringIO

import pytest
from django.core.management import call_command
from django.http import HttpRequest
from django.utils import timezone

from devices.models import AuditEvent, Device, Level, Membership, Share, Tenant, User

pytestmark = pytest.mark.django_db


def counts():
    return [m.objects.count() for m in (Tenant, User, Membership, Device, Share, AuditEvent)]


def test_seed_demo_is_complete_and_idempotent():
    call_command("seed_demo", stdout=StringIO())
    first = counts()
    call_command("seed_demo", stdout=StringIO())
    assert counts() == first

    tenant = Tenant.objects.get(slug="demo")
    live = Share.objects.live().filter(tenant=tenant)
    assert {s.level for s in live} == {Level.VIEW, Level.CONTROL, Level.MANAGE}
    assert live.filter(group__isnull=False).exists()
    assert live.filter(parent__isnull=False).exists()
    soon = live.filter(expires_at__isnull=False).get()
    assert timezone.now() < soon.expires_at < timezone.now() + timezone.timedelta(days=1)
    assert Device.objects.filter(tenant=tenant, group__isnull=False).count() >= 2
    # Issue 16's example: the cleaner opens the front door on Tuesday mornings only.
    cleaner = live.get(schedule__isnull=False)
    assert (cleaner.device.thing_name, cleaner.level) == ("demo-front-lock", Level.CONTROL)
    assert cleaner.schedule == {"timezone": "Europe/Brussels",
                                "windows": [{"days": ["tue"], "start": "09:00", "end": "12:00"}]}
    assert AuditEvent.objects.filter(tenant=tenant, source="command", action="share.create").count() == live.count()
    owner = Membership.objects.get(tenant=tenant, role="owner").user
    assert owner.is_staff and owner.check_password("devshare-demo")


def test_ensure_admin_creates_then_resets_a_working_login(client):
    out = StringIO()
    call_command("ensure_admin", "--email", "ops@example.test", "--password", "first-pass", "--print", stdout=out)
    assert "password: first-pass" in out.getvalue()
    call_command("ensure_admin", "--email", "ops@example.test", "--password", "second-pass", stdout=out)
    user = User.objects.get(email="ops@example.test")
    assert user.is_superuser and user.is_staff and not user.check_password("first-pass")
    # The sign-in lockout (django-axes) needs the request every real sign-in has.
    assert client.login(request=HttpRequest(), username="ops@example.test", password="second-pass")
    assert client.get("/admin/").status_code == 200
