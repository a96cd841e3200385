"""Pushes against a moto DynamoDB server over HTTP: each change rewrites
exactly the affected principals' items, and never an older over a newer."""
import io
import json
from datetime import timedelta

import pytest
from botocore.awsrequest import AWSResponse
from django.utils import timezone

from authz import tasks
from authz.models import PrincipalSync
from authz.snapshots import outbox, store
from authz.snapshots.push import push
from devices import services
from devices.models import Level, Share, Tenant
from lambda_bridge import snapshot
from lambda_bridge.snapshot import Snapshot

pytestmark = pytest.mark.django_db


@pytest.fixture
def synced(world, other, table, django_capture_on_commit_callbacks):
    """Both tenants fully pushed; `run(action)` runs it and its pushes, and
    returns the keys whose items changed. (Writes outside `run` would leave
    their push pending until a commit that never comes in a test.)"""
    with django_capture_on_commit_callbacks(execute=True):
        outbox.record_everyone(tenants=Tenant.objects.all())

    def run(action):
        before = table.items()
        with django_capture_on_commit_callbacks(execute=True):
            action()
        after = table.items()
        return {k for k in after.keys() | before.keys() if after.get(k) != before.get(k)}

    return run


def ukey(world, user):
    return snapshot.item_key(snapshot.USER, world.tenant.pk, str(user.pk))


def dkey(world, thing):
    return snapshot.item_key(snapshot.DEVICE, world.tenant.pk, thing)


def grant(world, grantee, level=Level.VIEW, **target):
    target = target or {"device": world.lock}
    return services.create_share(actor=world.owner, grantee=grantee, level=level, **target)


def levels(table, key):
    return table.snapshot(key).levels_at(int(timezone.now().timestamp()))


def test_full_sync_writes_every_member_and_device_of_every_tenant(synced, world, other, table):
    keys = set(table.items())
    for w in (world, other):
        assert {ukey(w, u) for u in (w.owner, w.admin, w.alice, w.bob, w.carol)} <= keys
        assert {dkey(w, w.lamp.thing_name), dkey(w, w.lock.thing_name)} <= keys
    assert levels(table, ukey(world, world.owner)) == {world.lamp.thing_name: 4, world.lock.thing_name: 4}
    assert PrincipalSync.objects.lagging().count() == 0


def test_share_then_revoke_changes_only_the_grantee_item(synced, world, table):
    share = None

    def make():
        nonlocal share
        share = grant(world, world.alice, Level.CONTROL)

    assert synced(make) == {ukey(world, world.alice)}
    assert levels(table, ukey(world, world.alice)) == {world.lock.thing_name: snapshot.CONTROL}
    assert synced(lambda: services.revoke_share(actor=world.owner, share=share)) == {ukey(world, world.alice)}
    assert levels(table, ukey(world, world.alice)) == {}


def test_group_share_and_group_changes(synced, world, table):
    assert synced(lambda: grant(world, world.bob, device=None, group=world.group)) == {ukey(world, world.bob)}
    assert levels(table, ukey(world, world.bob)) == {world.lamp.thing_name: snapshot.VIEW}
    changed = synced(lambda: services.add_device_to_group(actor=world.owner, group=world.group, device=world.lock))
    assert changed == {ukey(world, world.bob), ukey(world, world.owner)}
    assert set(levels(table, ukey(world, world.bob))) == {world.lamp.thing_name, world.lock.thing_name}


def test_expiry_is_enforced_by_the_entry_and_tidied_by_the_sweep(synced, world, table, settings):
    end = timezone.now() + timedelta(seconds=2)
    synced(lambda: grant(world, world.alice, device=world.lock, expires_at=end))
    entry, = table.snapshot(ukey(world, world.alice)).entries
    assert entry.expires == int(end.timestamp())
    # After the end the entry no longer counts, before any push...
    assert table.snapshot(ukey(world, world.alice)).levels_at(int(end.timestamp()) + 1) == {}
    # ...and the sweep rewrites just that item without it.
    Share.objects.filter(grantee=world.alice).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert synced(tasks.sweep_expired_shares) == {ukey(world, world.alice)}
    assert table.snapshot(ukey(world, world.alice)).entries == ()


def test_transfer_moves_the_device_between_owners_and_cuts_sharees(synced, world, table):
    synced(lambda: grant(world, world.alice, device=world.lamp))
    move = lambda: services.transfer_device(actor=world.owner, device=world.lamp, new_owner=world.carol)  # noqa: E731
    synced_keys = synced(move)
    assert synced_keys == {ukey(world, u) for u in (world.owner, world.carol, world.alice)} | {
        dkey(world, world.lamp.thing_name)}
    assert world.lamp.thing_name not in levels(table, ukey(world, world.owner))
    assert levels(table, ukey(world, world.carol)) == {world.lamp.thing_name: snapshot.OWNER}


def test_delete_leaves_a_tombstone_for_the_device_that_expires(synced, world, table, settings):
    synced(lambda: grant(world, world.alice, device=world.lamp))
    thing = world.lamp.thing_name
    changed = synced(lambda: services.delete_device(actor=world.owner, device=world.lamp))
    assert changed == {ukey(world, world.owner), ukey(world, world.alice), dkey(world, thing)}
    item = table.items()[dkey(world, thing)]
    tomb = snapshot.from_item(item)
    assert tomb.gone and tomb.entries == ()
    assert int(item["ttl"]["N"]) == tomb.generated_at + settings.SNAPSHOT_TOMBSTONE_DAYS * 86400


def test_removed_member_gets_a_tombstone(synced, world, table):
    synced(lambda: grant(world, world.alice))
    membership = world.alice.memberships.get()
    assert synced(lambda: services.remove_member(actor=world.admin, membership=membership)) == {
        ukey(world, world.alice)}
    assert table.snapshot(ukey(world, world.alice)).gone


def test_a_stale_write_is_rejected(table):
    newer = Snapshot(kind="u", tenant=1, principal="7", version=20, generated_at=100,
                     entries=(snapshot.Entry("lamp", snapshot.VIEW),))
    older = Snapshot(kind="u", tenant=1, principal="7", version=10, generated_at=200,
                     entries=(snapshot.Entry("lamp", snapshot.MANAGE),))
    assert store.put_snapshot(newer).written
    outcome = store.put_snapshot(older)
    assert outcome.stale and not outcome.written
    assert table.snapshot(newer.key) == newer


def test_pushes_run_out_of_order_end_in_the_newest_state(world, table):
    share = grant(world, world.alice, Level.CONTROL)          # version 1 of alice, not pushed yet
    row = PrincipalSync.objects.get(principal=str(world.alice.pk))
    first = row.desired_version
    services.revoke_share(actor=world.owner, share=share)     # version 2
    row.refresh_from_db()
    assert row.desired_version > first
    push([row.pk])                                             # the newer task runs first...
    old_content = Snapshot(kind="u", tenant=world.tenant.pk, principal=str(world.alice.pk), version=first,
                           generated_at=0, entries=(snapshot.Entry(world.lock.thing_name, snapshot.CONTROL),))
    assert store.put_snapshot(old_content).stale               # ...and a delayed old write is refused
    result = push([row.pk])                                    # a duplicate task changes nothing
    assert result.stale == [row.pk]
    assert table.snapshot(ukey(world, world.alice)).entries == ()
    row.refresh_from_db()
    assert row.pushed_version == row.desired_version


class Throttle:
    """Answers the first `times` PutItem calls the way DynamoDB does when throttling."""

    def __init__(self, times):
        self.left = times
        self.seen = 0

    def __call__(self, request, **kwargs):
        self.seen += 1
        if self.left <= 0:
            return None
        self.left -= 1
        body = json.dumps({"__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
                           "message": "Rate of requests exceeds the allowed throughput."}).encode()
        return AWSResponse(request.url, 400, {"x-amzn-requestid": "throttled"}, _Raw(body))


class _Raw:
    def __init__(self, body):
        self._body = io.BytesIO(body)

    def stream(self, **kwargs):
        yield self._body.read()


@pytest.fixture
def throttle():
    throttles = []

    def start(times):
        t = Throttle(times)
        store.client().meta.events.register_first("before-send.dynamodb.PutItem", t)
        throttles.append(t)
        return t

    yield start
    for t in throttles:
        store.client().meta.events.unregister("before-send.dynamodb.PutItem", t)


def test_throttling_is_retried_by_the_client_then_correct(world, table, throttle):
    t = throttle(2)  # fewer than botocore's attempts: absorbed inside one call
    grant(world, world.alice)
    row = PrincipalSync.objects.get(principal=str(world.alice.pk))
    assert push([row.pk]).written == [row.pk]
    assert t.seen == 3
    assert levels(table, ukey(world, world.alice)) == {world.lock.thing_name: snapshot.VIEW}


def test_lasting_throttling_is_recorded_then_retried_by_the_task(world, table, throttle):
    t = throttle(4)  # outlasts one call's retries; the task retries the rest
    grant(world, world.alice)
    row = PrincipalSync.objects.get(principal=str(world.alice.pk))
    first = push([row.pk])
    assert first.retryable == [row.pk]
    row.refresh_from_db()
    assert row.attempts == 1 and "ProvisionedThroughputExceeded" in row.last_error and row.retry_after
    tasks.push_snapshots.apply(args=([row.pk],))  # the task itself: its own retry finishes the job
    row.refresh_from_db()
    assert (row.attempts, row.last_error, row.pushed_version) == (0, "", row.desired_version)
    assert t.left == 0
    assert levels(table, ukey(world, world.alice)) == {world.lock.thing_name: snapshot.VIEW}


def test_an_item_dynamodb_will_not_take_is_recorded_and_not_retried(world, table, settings):
    settings.DYNAMODB_TABLE = "no-such-table"
    grant(world, world.alice)
    row = PrincipalSync.objects.get(principal=str(world.alice.pk))
    result = push([row.pk])
    assert result.failed and not result.retryable
    row.refresh_from_db()
    assert "ResourceNotFound" in row.last_error and row.pushed_version < row.desired_version


def test_worker_threads_pushing_at_once_never_overflow_the_connection_pool(table, caplog):
    """Eight worker threads, each pushing a batch larger than the push pool,
    share one client: no request may find its connection pool full (urllib3
    then opens a connection only to throw it away, and logs it)."""
    import logging
    import time
    from concurrent.futures import ThreadPoolExecutor

    now = int(time.time())
    batches = [[Snapshot(kind=snapshot.USER, tenant=1, principal=f"{w}-{i}", version=1, generated_at=now,
                         entries=()) for i in range(40)] for w in range(8)]
    with caplog.at_level(logging.WARNING, logger="urllib3.connectionpool"):
        with ThreadPoolExecutor(max_workers=len(batches)) as workers:
            outcomes = [o for batch in workers.map(store.put_snapshots, batches) for o in batch]
    assert [o for o in outcomes if not o.written] == []
    assert len(table.items()) == 8 * 40
    assert [r.getMessage() for r in caplog.records if "pool is full" in r.getMessage()] == []
