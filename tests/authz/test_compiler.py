"""Snapshots compiled from the database agree with effective access, in a
fixed number of queries."""
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from authz.snapshots.compiler import LEVEL_CODES, Principal, compile_snapshots
from devices import services
from devices.models import Level
from devices.selectors import effective_access
from lambda_bridge import snapshot
from tests.factories import DeviceFactory, member

pytestmark = pytest.mark.django_db


def user_snapshot(user, tenant, now=None):
    now = now or timezone.now()
    p = Principal(tenant.pk, snapshot.USER, str(user.pk), 1)
    return compile_snapshots([p], now=now)[(tenant.pk, snapshot.USER, str(user.pk))]


def share(world, grantee, level, **kw):
    kw.setdefault("device", world.lock)
    return services.create_share(actor=world.owner, grantee=grantee, level=level, **kw)


def test_owner_holds_every_own_device_with_its_group(world):
    snap = user_snapshot(world.owner, world.tenant)
    assert not snap.gone
    assert {(e.thing, e.level, e.group) for e in snap.entries} == {
        (world.lamp.thing_name, snapshot.OWNER, world.group.pk),
        (world.lock.thing_name, snapshot.OWNER, None),
    }


def test_direct_and_group_shares_become_entries_with_their_windows(world):
    later, end = timezone.now() + timedelta(hours=2), timezone.now() + timedelta(days=1)
    share(world, world.alice, Level.CONTROL, expires_at=end)
    share(world, world.alice, Level.VIEW, device=None, group=world.group, starts_at=later)
    entries = {e.thing: e for e in user_snapshot(world.alice, world.tenant).entries}
    assert set(entries) == {world.lock.thing_name, world.lamp.thing_name}
    lock, lamp = entries[world.lock.thing_name], entries[world.lamp.thing_name]
    assert (lock.level, lock.not_before, lock.expires) == (snapshot.CONTROL, None, int(end.timestamp()))
    assert (lamp.level, lamp.group, lamp.expires) == (snapshot.VIEW, world.group.pk, None)
    # Rounded up: a start is never moved earlier than the share says.
    assert lamp.not_before >= later.timestamp()


def test_revoked_and_ended_shares_are_left_out(world):
    gone = share(world, world.alice, Level.CONTROL)
    services.revoke_share(actor=world.owner, share=gone)
    share(world, world.alice, Level.VIEW, device=world.lamp, expires_at=timezone.now() + timedelta(minutes=5))
    assert user_snapshot(world.alice, world.tenant).entries
    assert user_snapshot(world.alice, world.tenant, now=timezone.now() + timedelta(minutes=6)).entries == ()


def test_a_weaker_grant_inside_a_stronger_one_is_dropped_but_a_later_upgrade_is_kept(world):
    share(world, world.alice, Level.VIEW)                                      # view, open-ended
    share(world, world.alice, Level.MANAGE, device=None, group=world.group)   # lamp: manage
    share(world, world.alice, Level.VIEW, device=world.lamp)                  # covered by the group share
    share(world, world.bob, Level.VIEW)
    services.create_share(actor=world.owner, grantee=world.bob, group=world.group, level=Level.CONTROL,
                          starts_at=timezone.now() + timedelta(hours=1))
    alice = sorted((e.thing, e.level) for e in user_snapshot(world.alice, world.tenant).entries)
    assert alice == sorted([(world.lock.thing_name, snapshot.VIEW), (world.lamp.thing_name, snapshot.MANAGE)])
    bob = user_snapshot(world.bob, world.tenant)
    assert len(bob.entries) == 2  # view now on the lock; control on the lamp from the hour


def test_non_members_inactive_users_and_other_tenants_get_a_tombstone(world, other):
    share(world, world.alice, Level.VIEW)
    assert user_snapshot(other.alice, world.tenant).gone
    assert user_snapshot(world.alice, other.tenant).gone
    world.alice.is_active = False
    world.alice.save()
    assert user_snapshot(world.alice, world.tenant).gone


def test_a_tenant_admin_gets_no_device_from_being_admin(world):
    snap = user_snapshot(world.admin, world.tenant)
    assert not snap.gone and snap.entries == ()


def test_a_device_principal_holds_itself_until_deleted(world, other):
    names = [world.lamp.thing_name, other.lamp.thing_name]
    wanted = [Principal(world.tenant.pk, snapshot.DEVICE, n, 1) for n in names]
    snaps = compile_snapshots(wanted, now=timezone.now())
    own = snaps[(world.tenant.pk, snapshot.DEVICE, world.lamp.thing_name)]
    assert [(e.thing, e.level) for e in own.entries] == [(world.lamp.thing_name, snapshot.OWNER)]
    # The same name under the wrong tenant is nobody.
    assert snaps[(world.tenant.pk, snapshot.DEVICE, other.lamp.thing_name)].gone


def test_snapshots_agree_with_effective_access_for_everyone(world):
    share(world, world.alice, Level.CONTROL)
    share(world, world.bob, Level.MANAGE, device=None, group=world.group, can_reshare=True)
    services.create_share(actor=world.bob, grantee=world.carol, device=world.lamp, level=Level.VIEW)
    now = timezone.now()
    for user in (world.owner, world.admin, world.alice, world.bob, world.carol):
        expected = {}
        for device in (world.lamp, world.lock):
            access = effective_access(user=user, device=device, now=now)
            if access is not None:
                expected[device.thing_name] = LEVEL_CODES[access.level]
        assert user_snapshot(user, world.tenant, now).levels_at(int(now.timestamp())) == expected, user.email


def compile_queries(principals, now):
    with CaptureQueriesContext(connection) as ctx:
        compile_snapshots(principals, now=now)
    return len(ctx)


def test_query_count_does_not_grow_with_devices_or_principals(world):
    now = timezone.now()
    one = [Principal(world.tenant.pk, snapshot.USER, str(world.alice.pk), 1)]
    share(world, world.alice, Level.VIEW)
    few = compile_queries(one, now)
    users = [member(world.tenant) for _ in range(20)]
    for i in range(100):
        device = DeviceFactory(tenant=world.tenant, owner=world.owner, device_type=world.type, group=world.group)
        if i < 3:
            share(world, world.alice, Level.VIEW, device=device)
    services.create_share(actor=world.owner, grantee=world.alice, group=world.group, level=Level.CONTROL)
    many = one + [Principal(world.tenant.pk, snapshot.USER, str(u.pk), 1) for u in users]
    assert len(user_snapshot(world.alice, world.tenant, now).entries) > 100
    assert compile_queries(many, now) == few
