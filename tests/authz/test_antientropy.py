"""Anti-entropy: a table, key item or snapshot item that DynamoDB lost comes
back through the beat task or `manage.py verify_snapshots`, tombstones included."""
import logging
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from authz import tasks
from authz.models import PrincipalSync, SigningKeyring
from authz.snapshots import antientropy, store
from authz.tokens import rotation, signing_keys
from devices import services
from devices.models import Level, Membership, Tenant
from lambda_bridge import keys, snapshot

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_incidents():
    antientropy._open.clear()
    yield
    antientropy._open.clear()


@pytest.fixture
def pushed_world(world, table, django_capture_on_commit_callbacks):
    """Keys published, shares pushed, and one tombstone: a deleted device."""
    rotation.rotate(actor=None)
    with django_capture_on_commit_callbacks(execute=True):
        services.create_share(actor=world.owner, grantee=world.alice, device=world.lock, level=Level.CONTROL)
        services.create_share(actor=world.owner, grantee=world.bob, device=world.lamp, level=Level.VIEW)
        services.delete_device(actor=world.owner, device=world.lamp)
        services.remove_member(actor=world.admin, membership=Membership.objects.get(user=world.carol))
    assert not PrincipalSync.objects.lagging().exists()
    return table


def key_of(world, user) -> str:
    return snapshot.item_key(snapshot.USER, world.tenant.pk, str(user.pk))


def device_key(world, device) -> str:
    return snapshot.item_key(snapshot.DEVICE, world.tenant.pk, device.thing_name)


def snap(table, key):
    return snapshot.from_item(table.items()[key])


def expected_items():
    return {row.key: row.desired_version for row in PrincipalSync.objects.all()}


def stored_items(table):
    return {key: int(item["v"]["N"]) for key, item in table.items().items() if key != keys.ITEM_KEY}


def errors(caplog):
    return [r for r in caplog.records if r.levelno >= logging.ERROR and r.name == "authz.snapshots.antientropy"]


def delete_item(key):
    from django.conf import settings

    store.client().delete_item(TableName=settings.DYNAMODB_TABLE, Key={"pk": {"S": key}})


def put_older(table, key):
    """The item as an older push left it: same principal, a lower version."""
    item = table.items()[key]
    item["v"] = {"N": "1"}
    store.client().put_item(TableName=table.name, Item=item)


def test_missing_and_stale_items_are_repushed_by_the_beat_with_one_error(world, pushed_world, caplog):
    lamp = device_key(world, world.lamp)
    assert snap(pushed_world, lamp).gone and snap(pushed_world, key_of(world, world.carol)).gone
    delete_item(key_of(world, world.alice))
    delete_item(lamp)                                  # a tombstone
    put_older(pushed_world, key_of(world, world.bob))

    caplog.set_level(logging.INFO, logger="authz.snapshots.antientropy")
    tasks.check_snapshot_table()  # eager here: the re-push runs inline

    assert stored_items(pushed_world) == expected_items()
    assert snap(pushed_world, lamp).gone
    assert snap(pushed_world, key_of(world, world.alice)).levels_at(0) == {world.lock.thing_name: snapshot.CONTROL}
    [error] = errors(caplog)
    assert "2 of" in error.getMessage() and "1 stale" in error.getMessage()

    delete_item(key_of(world, world.alice))  # the same incident, still open: no second ERROR
    tasks.check_snapshot_table()
    assert len(errors(caplog)) == 1 and stored_items(pushed_world) == expected_items()


def test_a_lost_table_comes_back_with_its_key_item_and_every_item(world, pushed_world, caplog):
    caplog.set_level(logging.INFO, logger="authz.snapshots.antientropy")
    store.client().delete_table(TableName=pushed_world.name)

    tasks.check_snapshot_table()

    assert stored_items(pushed_world) == expected_items()
    ring = SigningKeyring.objects.get()
    assert int(pushed_world.items()[keys.ITEM_KEY]["v"]["N"]) == ring.pushed_version
    [error] = errors(caplog)
    assert "missing" in error.getMessage()
    tasks.check_snapshot_table()
    assert len(errors(caplog)) == 1
    assert "are back" in caplog.text


def test_a_lost_key_item_is_published_again(world, pushed_world, caplog):
    caplog.set_level(logging.INFO, logger="authz.snapshots.antientropy")
    delete_item(keys.ITEM_KEY)
    tasks.check_snapshot_table()
    item = pushed_world.items()[keys.ITEM_KEY]
    assert keys.from_item(item).active == signing_keys.active_signing_key().slot
    [error] = errors(caplog)
    assert "key item" in error.getMessage()


def test_the_beat_walks_the_rows_in_bounded_slices(world, pushed_world, settings):
    settings.SNAPSHOT_VERIFY_BATCH = 2
    for key in stored_items(pushed_world):
        delete_item(key)
    rows = PrincipalSync.objects.count()
    checked = [tasks.check_snapshot_table()["checked"] for _ in range(rows)]
    assert max(checked) <= 2
    assert stored_items(pushed_world) == expected_items()


def test_an_expired_tombstone_is_left_to_the_ttl(world, pushed_world, settings):
    settings.SNAPSHOT_TOMBSTONE_DAYS = 0  # every pushed_world tombstone is past its TTL
    lamp = device_key(world, world.lamp)
    delete_item(lamp)
    found = antientropy.verify_rows(list(PrincipalSync.objects.all()), mark=True)
    assert found.missing == [] and found.expired == 1
    assert lamp not in stored_items(pushed_world)


# --- manage.py verify_snapshots ---------------------------------------------------------


def run(*args) -> str:
    out = StringIO()
    call_command("verify_snapshots", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def test_verify_reports_without_changing_anything(world, pushed_world):
    delete_item(key_of(world, world.alice))
    delete_item(device_key(world, world.lamp))
    put_older(pushed_world, key_of(world, world.bob))
    before_rows = list(PrincipalSync.objects.values_list("pk", "pushed_version", "desired_version"))
    before_items = stored_items(pushed_world)

    out = StringIO()
    with pytest.raises(CommandError, match="--repair"):
        call_command("verify_snapshots", stdout=out, stderr=StringIO())
    rows = PrincipalSync.objects.count()
    assert f"{rows} checked, 2 missing, 1 stale, 0 repaired." in out.getvalue()
    assert list(PrincipalSync.objects.values_list("pk", "pushed_version", "desired_version")) == before_rows
    assert stored_items(pushed_world) == before_items


def test_verify_repair_puts_back_items_tombstones_and_the_key_item(world, pushed_world):
    delete_item(key_of(world, world.alice))
    delete_item(device_key(world, world.lamp))
    delete_item(keys.ITEM_KEY)
    put_older(pushed_world, key_of(world, world.bob))

    out = run("--repair")

    rows = PrincipalSync.objects.count()
    assert "key item: published again" in out
    assert f"{rows} checked, 2 missing, 1 stale, 3 repaired." in out
    assert stored_items(pushed_world) == expected_items()
    assert keys.ITEM_KEY in pushed_world.items()
    assert run().endswith(f"{rows} checked, 0 missing, 0 stale, 0 repaired.\n")


def test_verify_repair_recreates_a_lost_table(world, pushed_world):
    store.client().delete_table(TableName=pushed_world.name)
    with pytest.raises(CommandError, match="is missing; --repair"):
        run()
    out = run("--repair")
    rows = PrincipalSync.objects.count()
    assert "created" in out and f"{rows} checked, {rows} missing, 0 stale, {rows} repaired." in out
    assert stored_items(pushed_world) == expected_items()


def test_verify_only_the_named_tenant(world, other, pushed_world, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        services.create_share(actor=other.owner, grantee=other.alice, device=other.lock, level=Level.VIEW)
    delete_item(key_of(other, other.alice))
    out = run("--tenant", world.tenant.slug)
    assert f"{PrincipalSync.objects.filter(tenant=world.tenant).count()} checked, 0 missing" in out


@pytest.mark.parametrize("args, message", [
    (("--tenant", "nope"), "No tenant with slug nope."),
    (("--batch", "0"), "--batch must be between 1 and 10000, not 0."),
])
def test_verify_bad_arguments_are_one_line_errors_and_change_nothing(world, pushed_world, args, message):
    delete_item(key_of(world, world.alice))
    with pytest.raises(CommandError) as raised:
        run("--repair", *args)
    assert str(raised.value) == message
    assert key_of(world, world.alice) not in stored_items(pushed_world)
    assert Tenant.objects.count() == 1
