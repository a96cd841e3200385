"""DynamoDB comes back empty while the worker and beat run: with no operator,
the table, the signing-key item and every principal's item (tombstones
included) are back, and the authorizer allows again."""
import pytest

from authz.models import PrincipalSync, SigningKeyring
from authz.snapshots import store
from authz.tokens import credentials, rotation
from devices import services
from devices.models import Level, Membership
from lambda_bridge import keys, snapshot
from tests.support.processes import CeleryProcess, OwnMoto, test_database_url, unit_celery_args, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

RESTORE_WITHIN_SECONDS = 90

# What authz/snapshots/antientropy.py logs when an incident starts: one ERROR
# line per incident, INFO lines while it lasts and when it is over.
INCIDENT = "ERROR authz.snapshots.antientropy "
TABLE_MISSING = "is missing; creating it"
UNREACHABLE, REACHABLE_AGAIN = "cannot check table", "answers again"


def restored() -> bool:
    try:
        if not store.table_exists():
            return False
        key_item = store.get_item(keys.ITEM_KEY)
        stored = store.stored_versions([r.key for r in PrincipalSync.objects.all()])
    except Exception:  # noqa: BLE001  (the new server may still be starting)
        return False
    ring = SigningKeyring.objects.get()
    return (key_item is not None and int(key_item["v"]["N"]) == ring.pushed_version
            and stored == {r.key: r.desired_version for r in PrincipalSync.objects.all()})


def test_an_emptied_dynamodb_is_restored_by_worker_and_beat(world, table, settings, shared_redis, tmp_path,
                                                           cold_start):
    test_database_url()  # worker and beat must see the test database: PostgreSQL only
    moto = OwnMoto()
    moto.start()
    saved_endpoint = settings.DYNAMODB_ENDPOINT_URL
    settings.DYNAMODB_ENDPOINT_URL = moto.url
    store.client.cache_clear()
    fast = {"SNAPSHOT_ANTIENTROPY_SECONDS": "2", "SNAPSHOT_RECONCILE_SECONDS": "1",
            "SNAPSHOT_RECONCILE_GRACE_SECONDS": "2"}
    worker = CeleryProcess(unit_celery_args("devshare-worker.service"), log=tmp_path / "worker.log",
                           broker=shared_redis, env=fast)
    beat = CeleryProcess(["beat", "--schedule", str(tmp_path / "beat-schedule"), "--loglevel", "INFO"],
                         log=tmp_path / "beat.log", broker=shared_redis, env=fast)
    try:
        store.ensure_table()
        rotation.rotate(actor=None)
        # Pushed inline (the test process runs tasks eagerly): shares, and two tombstones.
        services.create_share(actor=world.owner, grantee=world.alice, device=world.lock, level=Level.CONTROL)
        services.create_share(actor=world.owner, grantee=world.bob, device=world.lamp, level=Level.VIEW)
        services.delete_device(actor=world.owner, device=world.lamp)
        services.remove_member(actor=world.admin, membership=Membership.objects.get(user=world.carol))
        assert restored()
        gone = [r.key for r in PrincipalSync.objects.all()
                if snapshot.from_item(store.get_item(r.key)).gone]
        assert len(gone) == 2

        worker.start(), beat.start()
        wait_until(lambda: "ready." in worker.output(), timeout=60, what="the worker's start")

        moto.stop()
        moto.start()  # a new, empty server on the same port
        assert not store.table_exists()

        wait_until(restored, timeout=RESTORE_WITHIN_SECONDS, interval=0.5,
                   what="the table, the key item and every item back")
        assert all(snapshot.from_item(store.get_item(k)).gone for k in gone)
        # The missing table is one incident: one ERROR line, however many beats it took.
        # Restarting the server leaves it down for a moment; a beat that falls in
        # that moment finds the endpoint unreachable, which antientropy.py
        # reports as an incident of its own (once, and once resolved). Nothing
        # else is an incident here: the key item and the items are part of the
        # table's recovery.
        output = worker.output()
        errors = [line for line in output.splitlines() if INCIDENT in line]
        missing = [line for line in errors if TABLE_MISSING in line]
        outage = [line for line in errors if UNREACHABLE in line]
        assert len(missing) == 1, errors
        assert len(outage) <= 1, errors
        assert len(errors) == len(missing) + len(outage), errors
        if outage:
            assert output.count(REACHABLE_AGAIN) == 1, output[-3000:]

        lam = cold_start(DEVSHARE_DYNAMODB_ENDPOINT_URL=moto.url)
        creds = credentials.issue_user_credentials(actor=world.alice, tenant=world.tenant)
        response = lam.invoke(lam.event("test_invoke", creds.token))
        assert lam.last_log["reason"] == "ok" and response["isAuthenticated"]
    finally:
        worker.stop(), beat.stop()
        moto.stop()
        settings.DYNAMODB_ENDPOINT_URL = saved_endpoint
        store.client.cache_clear()
