"""Every access-changing service bumps exactly the affected principals, in its
own transaction, and queues one push per principal after commit."""
from datetime import timedelta
from unittest import mock

import pytest
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from authz import tasks
from authz.models import PrincipalSync
from authz.snapshots import outbox
from devices import services
from devices.models import Level
from lambda_bridge.snapshot import DEVICE, USER
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def versions():
    return {(r.tenant_id, r.kind, r.principal): r.desired_version for r in PrincipalSync.objects.all()}


def bumped_by(action):
    before = versions()
    action()
    after = versions()
    return {key for key, v in after.items() if v > before.get(key, 0)}


def users(world, *people):
    return {(world.tenant.pk, USER, str(p.pk)) for p in people}


def device(world, thing):
    return {(world.tenant.pk, DEVICE, thing)}


def grant(world, grantee, level=Level.VIEW, **target):
    target = target or {"device": world.lock}
    return services.create_share(actor=world.owner, grantee=grantee, level=level, **target)


def test_a_share_bumps_its_grantee_only(world, other):
    assert bumped_by(lambda: grant(world, world.alice)) == users(world, world.alice)


def test_repeating_an_identical_share_bumps_nobody(world):
    grant(world, world.alice)
    assert bumped_by(lambda: grant(world, world.alice)) == set()


def test_revoke_bumps_the_grantee_and_everyone_down_the_reshare_chain(world):
    parent = grant(world, world.alice, Level.MANAGE, device=world.lock, can_reshare=True)
    services.create_share(actor=world.alice, grantee=world.bob, device=world.lock, level=Level.VIEW)
    grant(world, world.carol)
    assert bumped_by(lambda: services.revoke_share(actor=world.owner, share=parent)) == users(
        world, world.alice, world.bob)


def test_update_bumps_the_grantee_and_clamped_reshares(world):
    parent = grant(world, world.alice, Level.MANAGE, device=world.lock, can_reshare=True)
    services.create_share(actor=world.alice, grantee=world.bob, device=world.lock, level=Level.VIEW)
    soon = timezone.now() + timedelta(hours=1)
    assert bumped_by(lambda: services.update_share(actor=world.owner, share=parent, expires_at=soon)) == users(
        world, world.alice, world.bob)


def test_group_membership_changes_bump_everyone_holding_the_device(world):
    grant(world, world.alice, device=None, group=world.group)   # via the group
    grant(world, world.bob, device=world.lock)                  # direct, entry names the group
    grant(world, world.carol, device=world.lamp)                # another device: untouched
    add = lambda: services.add_device_to_group(actor=world.owner, group=world.group, device=world.lock)  # noqa: E731
    assert bumped_by(add) == users(world, world.owner, world.alice, world.bob)
    world.lock.refresh_from_db()
    remove = lambda: services.remove_device_from_group(actor=world.owner, device=world.lock)  # noqa: E731
    assert bumped_by(remove) == users(world, world.owner, world.alice, world.bob)


def test_transfer_bumps_old_and_new_owner_and_the_sharees(world):
    grant(world, world.alice, device=world.lamp)
    grant(world, world.bob, device=None, group=world.group)
    move = lambda: services.transfer_device(actor=world.owner, device=world.lamp, new_owner=world.carol)  # noqa: E731
    # The device itself too: its snapshot carries the cut-off of its old tokens.
    assert bumped_by(move) == users(world, world.owner, world.carol, world.alice, world.bob) | device(
        world, world.lamp.thing_name)


def test_register_and_delete_bump_the_device_principal_and_its_audience(world):
    grant(world, world.alice, device=None, group=world.group)
    new = {}
    register = lambda: new.setdefault("d", services.register_device(  # noqa: E731
        actor=world.owner, tenant=world.tenant, name="Fan", device_type=world.type, group=world.group))
    thing = None
    changed = bumped_by(register)
    thing = new["d"].thing_name
    assert changed == users(world, world.owner, world.alice) | device(world, thing)
    delete = lambda: services.delete_device(actor=world.owner, device=new["d"])  # noqa: E731
    assert bumped_by(delete) == users(world, world.owner, world.alice) | device(world, thing)


def test_membership_and_account_changes_bump_that_user_in_each_tenant(world, other):
    newcomer = UserFactory()
    root = UserFactory(is_superuser=True)
    join = lambda: services.add_member(actor=root, tenant=world.tenant, user=newcomer)  # noqa: E731
    assert bumped_by(join) == users(world, newcomer)
    services.add_member(actor=root, tenant=other.tenant, user=newcomer)
    off = lambda: services.set_user_active(actor=root, user=newcomer, is_active=False)  # noqa: E731
    assert bumped_by(off) == users(world, newcomer) | users(other, newcomer)
    membership = newcomer.memberships.get(tenant=world.tenant)
    leave = lambda: services.remove_member(actor=world.admin, membership=membership)  # noqa: E731
    assert bumped_by(leave) == users(world, newcomer)


def test_refused_writes_bump_nothing(world):
    with pytest.raises(ValidationError, match="owner already has full access"):
        grant(world, world.owner)
    assert versions() == {}


def test_versions_only_grow(world):
    grant(world, world.alice)
    first = versions()
    services.revoke_shares(actor=world.owner, shares=world.lock.shares.all())
    second = versions()
    assert all(second[k] > first[k] for k in first)


def test_many_changes_in_one_transaction_queue_one_push_per_principal(world, django_capture_on_commit_callbacks):
    with mock.patch.object(tasks.push_snapshots, "apply_async") as queued:
        with django_capture_on_commit_callbacks(execute=True):
            with transaction.atomic():
                share = grant(world, world.alice)
                services.update_share(actor=world.owner, share=share, level=Level.CONTROL)
                grant(world, world.bob, device=world.lamp)
                services.revoke_share(actor=world.owner, share=share)
        assert queued.call_count == 1
        (ids,) = queued.call_args.args[0]
    rows = PrincipalSync.objects.filter(pk__in=ids)
    assert sorted(ids) == ids and len(ids) == 2
    assert {r.principal for r in rows} == {str(world.alice.pk), str(world.bob.pk)}


def test_a_rolled_back_savepoint_does_not_lose_the_push_of_what_committed(world, django_capture_on_commit_callbacks):
    with mock.patch.object(tasks.push_snapshots, "apply_async") as queued:
        with django_capture_on_commit_callbacks(execute=True):
            with transaction.atomic():
                try:
                    with transaction.atomic():
                        grant(world, world.bob)
                        raise RuntimeError("abandon this part")
                except RuntimeError:
                    pass
                grant(world, world.alice)
    sent = {pk for call in queued.call_args_list for pk in call.args[0][0]}
    alice = PrincipalSync.objects.get(principal=str(world.alice.pk))
    assert alice.pk in sent
    assert not PrincipalSync.objects.filter(principal=str(world.bob.pk)).exists()


def test_a_broker_that_refuses_costs_a_warning_not_the_write(world, django_capture_on_commit_callbacks, caplog):
    with mock.patch.object(tasks.push_snapshots, "apply_async", side_effect=ConnectionRefusedError):
        with django_capture_on_commit_callbacks(execute=True):
            grant(world, world.alice)
    row = PrincipalSync.objects.get(principal=str(world.alice.pk))
    assert row.pushed_version < row.desired_version
    assert "not queued" in caplog.text and "reconciler" in caplog.text


def test_enqueue_splits_into_batches(settings):
    settings.SNAPSHOT_PUSH_BATCH = 2
    with mock.patch.object(tasks.push_snapshots, "apply_async") as queued:
        assert outbox.enqueue([1, 2, 3, 4, 5]) == 3
    assert [c.args[0] for c in queued.call_args_list] == [([1, 2],), ([3, 4],), ([5],)]


def test_the_reconciler_queues_a_lagging_row_once_per_lease(world, settings):
    settings.SNAPSHOT_RECONCILE_GRACE_SECONDS = 0
    grant(world, world.alice)  # its own push never ran: the test transaction does not commit
    row = PrincipalSync.objects.get(principal=str(world.alice.pk))
    with mock.patch.object(tasks.push_snapshots, "apply_async") as queued:
        assert tasks.reconcile_snapshots() == 1
        assert tasks.reconcile_snapshots() == 0          # leased: not queued again at the next beat
        PrincipalSync.objects.filter(pk=row.pk).update(retry_after=timezone.now() - timedelta(seconds=1))
        assert tasks.reconcile_snapshots() == 1          # the lease ran out and it still lags
    assert [c.args[0] for c in queued.call_args_list] == [([row.pk],), ([row.pk],)]


def test_the_reconciler_leaves_fresh_changes_to_their_own_push(world, settings):
    settings.SNAPSHOT_RECONCILE_GRACE_SECONDS = 60
    grant(world, world.alice)
    with mock.patch.object(tasks.push_snapshots, "apply_async") as queued:
        assert tasks.reconcile_snapshots() == 0
    assert not queued.called


def test_bumping_many_principals_is_one_statement_that_keeps_existing_rows(world):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    members = [UserFactory() for _ in range(3)]
    first = outbox.record(tenant_id=world.tenant.pk, users={u.pk for u in members}, queue=False)
    rows = {r.pk: r.desired_version for r in PrincipalSync.objects.filter(pk__in=first)}
    many = set(range(10_000, 10_600))  # ids are enough: a bump names principals, it does not look them up
    with CaptureQueriesContext(connection) as captured:
        again = outbox.record(tenant_id=world.tenant.pk, users={u.pk for u in members} | many, devices={"d-x"},
                              queue=False)
    assert len(captured.captured_queries) == 1
    assert set(first) <= set(again) and len(again) == 3 + 600 + 1  # the same rows, bumped in place
    for row in PrincipalSync.objects.filter(pk__in=first):
        assert row.desired_version > rows[row.pk]
    assert PrincipalSync.objects.filter(tenant=world.tenant, kind=DEVICE, principal="d-x").exists()


def test_a_principal_named_twice_is_bumped_once(world):
    # PostgreSQL refuses an upsert that would touch one row twice.
    with transaction.atomic():
        ids = outbox.record(tenant_id=world.tenant.pk, users=[world.alice.pk, str(world.alice.pk)],
                            devices=[world.lamp.thing_name, world.lamp.thing_name], queue=False)
    assert len(ids) == 2
    assert PrincipalSync.objects.filter(pk__in=ids).count() == 2
