"""Live revocation under faults that the test causes (docs/live-access.md#the-disconnect-outbox):
a data plane that is down, a worker killed between the push and the cut,
twenty revokes of one person at once. Each ends with the client
disconnected and every receipt done."""
import threading

import pytest
from django.db import connection

from authz import tasks
from authz.models import AccessReceipt, SessionCut
from authz.snapshots import outbox
from devices import services
from devices.models import Level, Tenant
from tests.factories import DeviceFactory
from tests.support.live_access import BlackHole, closed_port_url, live_platform
from tests.support.processes import test_database_url, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def live(world, table, shared_redis, dynamodb_endpoint, settings, client_for, tmp_path):
    """local_iot and the broker; each test starts its workers."""
    test_database_url()  # the worker must see the test database: PostgreSQL only
    with live_platform(world=world, table=table, redis_url=shared_redis, dynamodb_endpoint=dynamodb_endpoint,
                       settings=settings, client_for=client_for, tmp_path=tmp_path) as platform:
        yield platform


def sharee_connected(live, world, *devices):
    """Alice, with a share of each device, connected and subscribed to the first's telemetry."""
    shares = [services.create_share(actor=world.owner, grantee=world.alice, device=d, level=Level.VIEW)
              for d in devices]
    outbox.record_everyone(tenants=Tenant.objects.all())
    wait_until(lambda: not _snapshots_lagging(), what="the snapshot pushes")
    return shares, live.connected(live.creds(world.alice), f"dev/{devices[0].thing_name}/out/#")


def _snapshots_lagging() -> bool:
    from authz.models import PrincipalSync

    return PrincipalSync.objects.lagging().exists()


def reconcile_until(condition) -> None:
    """The reconciler's beat, every half second here, until `condition` holds."""

    def reconciled() -> bool:
        tasks.reconcile_session_cuts()
        return condition()

    wait_until(reconciled, interval=0.5, what="the reconciled cut")


def alices_cut(world) -> SessionCut:
    return SessionCut.objects.get(tenant=world.tenant, principal=str(world.alice.pk))


def test_a_cut_that_fails_while_the_data_plane_is_down_runs_when_it_is_back(live, world):
    down = live.start_worker(closed_port_url())
    shares, sharee = sharee_connected(live, world, world.lock)

    services.revoke_share(actor=world.owner, share=shares[0])
    wait_until(lambda: alices_cut(world).attempts >= 1, what="the failed cut")
    failed = alices_cut(world)
    assert not failed.in_sync and failed.last_error and failed.retry_after is not None
    assert not AccessReceipt.objects.get().done
    assert not sharee.disconnected.is_set()  # nothing was closed, nothing was lost

    down.stop()
    live.start_worker()  # the data plane is back (local_iot's)
    reconcile_until(sharee.disconnected.is_set)
    wait_until(lambda: AccessReceipt.objects.get().done, what="the receipt")
    assert alices_cut(world).in_sync and AccessReceipt.objects.get().closed == 1


def test_a_worker_killed_between_the_push_and_the_cut_is_reconciled(live, world):
    hole = BlackHole()
    try:
        stuck = live.start_worker(hole.url)
        shares, sharee = sharee_connected(live, world, world.lock)
        services.revoke_share(actor=world.owner, share=shares[0])
        assert hole.accepted.wait(60), "the worker never called DeleteConnection"
        stuck.process.kill()  # SIGKILL, inside DeleteConnection
        stuck.process.wait(10)
    finally:
        hole.close()
    cut = alices_cut(world)
    assert not cut.in_sync and cut.attempts == 0  # it died before it could record anything
    assert not sharee.disconnected.is_set()

    live.start_worker()
    reconcile_until(sharee.disconnected.is_set)
    wait_until(lambda: AccessReceipt.objects.get().done, what="the receipt")
    assert alices_cut(world).in_sync


REVOKES = 20


def test_twenty_concurrent_revokes_of_one_grantee_make_one_cut_and_finish_every_receipt(live, world):
    live.start_worker()
    devices = [world.lock, *(DeviceFactory(tenant=world.tenant, owner=world.owner, device_type=world.type)
                             for _ in range(REVOKES - 1))]
    shares, sharee = sharee_connected(live, world, *devices)
    start = threading.Barrier(REVOKES)
    errors = []

    def revoke(granted):
        try:
            start.wait(30)
            services.revoke_share(actor=world.owner, share=granted)
        except Exception as exc:  # noqa: BLE001  (a deadlock or any other failure is reported below)
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=revoke, args=(s,)) for s in shares]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == [] and not any(t.is_alive() for t in threads)

    sharee.wait_disconnected()
    assert SessionCut.objects.filter(tenant=world.tenant).count() == 1
    wait_until(lambda: AccessReceipt.objects.filter(finished_at__isnull=True).count() == 0
               and AccessReceipt.objects.count() == REVOKES, what="every receipt done")
    assert alices_cut(world).in_sync
