"""What operators use: the sync commands and the console's sync status page."""
import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from authz.models import PrincipalSync
from authz.snapshots import store
from devices import services
from devices.models import AuditEvent, Level
from lambda_bridge import snapshot

pytestmark = pytest.mark.django_db


def run(*args):
    from io import StringIO

    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return out.getvalue()


def grant(w):
    return services.create_share(actor=w.owner, grantee=w.alice, device=w.lock, level=Level.CONTROL)


def test_ensure_table_creates_once_with_ttl_then_does_nothing(settings):
    settings.DYNAMODB_TABLE = "fresh-table"
    first = run("ensure_dynamodb_table")
    assert "created table fresh-table" in first and "enabled TTL" in first
    assert "nothing to do" in run("ensure_dynamodb_table")
    ttl = store.client().describe_time_to_live(TableName="fresh-table")["TimeToLiveDescription"]
    assert (ttl["TimeToLiveStatus"], ttl["AttributeName"]) == ("ENABLED", "ttl")
    store.client().delete_table(TableName="fresh-table")


def test_ensure_table_unreachable_is_a_one_line_error(settings):
    settings.DYNAMODB_ENDPOINT_URL = "http://127.0.0.1:9"
    store.client.cache_clear()
    with pytest.raises(CommandError, match="DynamoDB table"):
        run("ensure_dynamodb_table")


def test_sync_pushes_lagging_rows_and_reports(world, table):
    grant(world)
    assert "1 snapshot(s): 1 written" in run("sync_snapshots")
    assert "0 snapshot(s)" in run("sync_snapshots")
    assert PrincipalSync.objects.lagging().count() == 0


def test_sync_all_for_one_tenant_touches_only_that_tenant(world, other, table):
    out = run("sync_snapshots", "--all", "--tenant", world.tenant.slug)
    expected = world.tenant.memberships.count() + world.tenant.devices.count()
    assert f"{expected} snapshot(s): {expected} written" in out
    tenants = {snap.tenant for snap in table.snapshots().values()}
    assert tenants == {world.tenant.pk}


def test_dry_run_changes_nothing(world, other, table):
    grant(world)
    before = list(PrincipalSync.objects.values_list("desired_version", "pushed_version"))
    out = run("sync_snapshots", "--dry-run")
    assert f"{world.tenant.slug}: would push 1 snapshot(s)" in out and f"{other.tenant.slug}: would push 0" in out
    assert list(PrincipalSync.objects.values_list("desired_version", "pushed_version")) == before
    assert table.items() == {}


def test_sync_with_an_unknown_tenant_is_refused(db):
    with pytest.raises(CommandError, match="No tenant with slug nope"):
        run("sync_snapshots", "--tenant", "nope")


def test_show_snapshot_prints_the_decoded_item(world, table):
    grant(world)
    run("sync_snapshots")
    out = run("show_snapshot", world.alice.email)
    assert snapshot.item_key(snapshot.USER, world.tenant.pk, str(world.alice.pk)) in out
    line = next(line for line in out.splitlines() if world.lock.thing_name in line)
    assert "control" in line and "active" in line and world.lock.name in line


def test_show_snapshot_shows_a_grants_weekly_hours(world, table):
    services.create_share(actor=world.owner, grantee=world.alice, device=world.lock, level=Level.CONTROL,
                          schedule={"timezone": "Europe/Brussels",
                                    "windows": [{"days": ["tue"], "start": "09:00", "end": "12:00"}]})
    services.create_share(actor=world.owner, grantee=world.alice, device=world.lamp, level=Level.VIEW)
    run("sync_snapshots")
    out = run("show_snapshot", world.alice.email).splitlines()
    lock = next(line for line in out if world.lock.thing_name in line)
    lamp = next(line for line in out if world.lamp.thing_name in line)
    assert "tue 09:00-12:00 (Europe/Brussels)" in lock and " any " in lamp


def test_show_snapshot_says_when_nothing_was_pushed_and_refuses_strangers(world, table):
    assert "no item (not pushed yet)" in run("show_snapshot", world.bob.email)
    with pytest.raises(CommandError, match="No user nobody@x.test"):
        run("show_snapshot", "nobody@x.test")
    with pytest.raises(CommandError, match="No device"):
        run("show_snapshot", "--device", "no-such-thing")


def test_console_shows_only_the_admins_own_tenant_rows_and_resyncs(client, world, other, table):
    grant(world)
    grant(other)
    client.force_login(world.admin)
    page = client.get(reverse("admin:authz_principalsync_changelist"))
    assert page.status_code == 200
    text = page.content.decode()
    assert world.alice.email in text and other.alice.email not in text

    theirs = PrincipalSync.objects.get(tenant=other.tenant)
    mine = PrincipalSync.objects.get(tenant=world.tenant)
    assert client.get(reverse("admin:authz_principalsync_change", args=[theirs.pk])).status_code == 404
    before = (theirs.desired_version, mine.desired_version)
    client.post(reverse("admin:authz_principalsync_changelist"),
                {"action": "resync_selected", "_selected_action": [mine.pk, theirs.pk]})
    theirs.refresh_from_db()
    mine.refresh_from_db()
    assert theirs.desired_version == before[0]       # not selectable from this tenant's console
    assert mine.desired_version > before[1]
    assert AuditEvent.objects.filter(action="snapshot.resync", tenant=world.tenant, actor=world.admin).exists()
