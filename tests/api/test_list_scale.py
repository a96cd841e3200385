"""The device, group and share lists at scale (issue 12, item 9): exact rows,
order, counts and levels with many devices visible through several paths, and
queries shaped so that PostgreSQL does the per-row work for one page only."""
import json
import os
import subprocess
import sys
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from devices import selectors
from devices.models import Device, DeviceGroup, Level, Share
from tests.factories import DeviceFactory, DeviceGroupFactory, MembershipFactory, ShareFactory, member
from tests.support.api import tenant_url
from tests.support.paths import ROOT
from tests.support.services import require

pytestmark = pytest.mark.django_db

PAGE = 7


@pytest.fixture
def crowd(world, other):
    """Alice sees devices through direct shares, group shares, both at once (at
    different levels), and her own; revoked, expired and other tenants' shares
    grant nothing. Names repeat so that the id breaks ties in the order."""
    w, now = world, timezone.now()
    homes = [DeviceGroupFactory(tenant=w.tenant, owner=w.owner, name=f"Home {i}") for i in range(3)]
    make = lambda i, **kw: DeviceFactory(tenant=w.tenant, owner=w.owner, device_type=w.type,  # noqa: E731
                                         name=f"Device {i % 9}", **kw)
    loose = [make(i) for i in range(12)]
    grouped = [make(i, group=homes[i % 3]) for i in range(12)]
    for i in range(3):  # her own
        DeviceFactory(tenant=w.tenant, owner=w.alice, device_type=w.type, name=f"Device {i}")
    for i, device in enumerate(loose[:10]):
        ShareFactory(device=device, grantee=w.alice, level=[Level.VIEW, Level.CONTROL, Level.MANAGE][i % 3])
    ShareFactory(group=homes[0], device=None, grantee=w.alice, level=Level.VIEW)
    ShareFactory(group=homes[1], device=None, grantee=w.alice, level=Level.MANAGE)
    for device in grouped[:6]:  # a second path to four devices of homes 0 and 1
        ShareFactory(device=device, grantee=w.alice, level=Level.CONTROL)
    ShareFactory(device=loose[10], grantee=w.alice, revoked_at=now)
    ShareFactory(device=loose[11], grantee=w.alice, expires_at=now - timedelta(minutes=1),
                 starts_at=now - timedelta(hours=1))
    ShareFactory(group=homes[2], device=None, grantee=w.alice, starts_at=now + timedelta(hours=1))
    for device in loose + grouped:  # other people's shares on the same devices
        ShareFactory(device=device, grantee=member(w.tenant), level=Level.MANAGE)
    MembershipFactory(tenant=other.tenant, user=w.alice)  # her shares elsewhere stay elsewhere
    ShareFactory(device=other.lock, grantee=w.alice, level=Level.MANAGE)
    ShareFactory(group=other.group, device=None, grantee=w.alice, level=Level.MANAGE)
    return w


def expected_devices(user, tenant):
    """The rule restated in Python: owner above all, else the best live share."""
    now, rows = timezone.now(), []
    for device in Device.objects.filter(tenant=tenant):
        if device.owner_id == user.pk:
            rows.append((device.name, device.pk, int(Level.OWNER)))
            continue
        levels = [s.level for s in Share.objects.filter(grantee=user)
                  if s.is_live(now)
                  and (s.device_id == device.pk or (device.group_id and s.group_id == device.group_id))]
        if levels:
            rows.append((device.name, device.pk, max(levels)))
    return [(pk, level) for _, pk, level in sorted(rows)]


def read_all(client, path):
    """Every page of a list; returns (count of each page, rows in order)."""
    rows, counts, page = [], set(), 1
    while True:
        response = client.get(path, {"page": page, "page_size": PAGE})
        assert response.status_code == 200, response.content[:300]
        body = response.json()
        counts.add(body["count"])
        rows += body["results"]
        if not body["next"]:
            return counts, rows
        page += 1


LEVELS = {label: int(Level[label.upper()]) for label in ("view", "control", "manage", "owner")}


def test_device_pages_hold_each_visible_device_once_in_order_with_its_level(crowd, client_for):
    expected = expected_devices(crowd.alice, crowd.tenant)
    assert len(expected) == 10 + 8 + 2 + 3  # direct, homes 0 and 1, two of home 2 directly, her own
    counts, rows = read_all(client_for(crowd.alice), tenant_url("device-list", crowd))
    assert counts == {len(expected)}
    assert [(r["id"], LEVELS[r["level"]]) for r in rows] == expected


def test_group_pages_hold_each_visible_group_once_in_order_with_its_level(crowd, client_for):
    DeviceGroupFactory(tenant=crowd.tenant, owner=crowd.alice, name="Home 1")  # a tie broken by id
    groups = DeviceGroup.objects.filter(tenant=crowd.tenant)
    live = {s.group_id: s.level for s in Share.objects.filter(grantee=crowd.alice, group__isnull=False)
            if s.is_live()}
    expected = sorted((g.name, g.pk, Level.OWNER if g.owner_id == crowd.alice.pk else live[g.pk])
                      for g in groups if g.owner_id == crowd.alice.pk or g.pk in live)
    counts, rows = read_all(client_for(crowd.alice), tenant_url("group-list", crowd))
    assert counts == {3}
    assert [(r["id"], LEVELS[r["level"]]) for r in rows] == [(pk, int(level)) for _, pk, level in expected]


def test_share_pages_hold_each_visible_share_once_in_order(crowd, client_for):
    # The list's default is the active shares: neither revoked nor expired (a scheduled one is listed).
    received = Share.objects.filter(tenant=crowd.tenant, grantee=crowd.alice, revoked_at__isnull=True).exclude(
        expires_at__lte=timezone.now())
    expected = [(s.pk, s.level) for s in sorted(received, key=lambda s: (s.created_at, s.pk), reverse=True)]
    counts, rows = read_all(client_for(crowd.alice), tenant_url("share-list", crowd))
    assert counts == {len(expected)} and len(expected) == 10 + 2 + 6 + 2 - 1  # less the one expired share
    assert [(r["id"], LEVELS[r["level"]]) for r in rows] == expected


def test_a_tenant_admin_sees_every_device_once(crowd, client_for):
    expected = list(Device.objects.filter(tenant=crowd.tenant).order_by("name", "id").values_list("pk", flat=True))
    counts, rows = read_all(client_for(crowd.admin), tenant_url("device-list", crowd))
    assert counts == {len(expected)}
    assert [r["id"] for r in rows] == expected


@pytest.mark.parametrize("name", ["device-list", "group-list", "share-list"])
def test_lists_ask_for_no_distinct(crowd, client_for, name):
    # DISTINCT made PostgreSQL compute every visible row, levels included,
    # before it could order and cut one page; no rule needs it.
    with CaptureQueriesContext(connection) as queries:
        response = client_for(crowd.alice).get(tenant_url(name, crowd), {"page_size": PAGE})
    assert response.status_code == 200
    assert not [q["sql"] for q in queries if "DISTINCT" in q["sql"].upper()]


def subplan_loops(plan: dict) -> list[int]:
    """`Actual Loops` of every SubPlan node in an EXPLAIN (FORMAT JSON) tree."""
    subplan = plan.get("Parent Relationship") == "SubPlan" and "Limit" in plan["Node Type"]
    found = [plan["Actual Loops"]] if subplan else []
    for child in plan.get("Plans", []):
        found += subplan_loops(child)
    return found


def test_the_level_is_computed_for_the_page_rows_only(crowd):
    require(connection.vendor == "postgresql", "PostgreSQL (its query plans)")
    page = selectors.devices_for(user=crowd.alice, tenant=crowd.tenant)[:PAGE]
    sql, params = page.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, params)
        raw = cursor.fetchone()[0]
    plan = (json.loads(raw) if isinstance(raw, str) else raw)[0]["Plan"]
    # One SubPlan, the caller's best level (a LIMIT 1 over their shares), run
    # at most once per page row (not at all for her own devices), though 23 are visible.
    loops = subplan_loops(plan)
    assert len(loops) == 1 and 0 < loops[0] <= PAGE, loops


def test_the_app_connections_run_without_jit():
    require(connection.vendor == "postgresql", "PostgreSQL")
    with connection.cursor() as cursor:
        cursor.execute("SHOW jit")
        assert cursor.fetchone()[0] == "off"


def database_options(**env) -> dict:
    """The app's DATABASES["default"]["OPTIONS"] under `env` (settings read fresh)."""
    script = "import django, json; django.setup(); from django.conf import settings; " \
             "print(json.dumps(settings.DATABASES['default'].get('OPTIONS', {})))"
    clean = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "DATABASE_JIT"}}
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT,
                            env={**clean, "DJANGO_SETTINGS_MODULE": "config.settings.test", **env},
                            capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


@pytest.mark.parametrize("env, options", [
    ({"DATABASE_URL": "postgres://u@db:5432/app"}, {"options": "-c jit=off"}),
    ({"DATABASE_URL": "postgres://u@db:5432/app?options=-c%20statement_timeout%3D5000"},
     {"options": "-c statement_timeout=5000 -c jit=off"}),
    ({"DATABASE_URL": "postgres://u@db:5432/app", "DATABASE_JIT": "true"}, {}),
    ({}, {}),  # SQLite has no JIT
])
def test_jit_is_off_on_postgresql_unless_asked_for(env, options):
    assert database_options(**env) == options
