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
        assert worker.output().count("ERROR authz.snapshots.antientropy") == 1, worker.output()[-3000:]

        lam = cold_start(DEVSHARE_DYNAMODB_ENDPOINT_URL=moto.url)
        creds = credentials.issue_user_credentials(actor=world.alice, tenant=world.tenant)
        response = lam.invoke(lam.event("test_invoke", creds.token))
        assert lam.last_log["reason"] == "ok" and response["isAuthenticated"]
    finally:
        worker.stop(), beat.stop()
        moto.stop()
        settings.DYNAMODB_ENDPOINT_URL = saved_endpoint
        store.client.cache_clear()
