"""Effective access over a matrix of share combinations, and the visibility
rule that must agree with it."""
import itertools
from datetime import timedelta

import pytest
from django.utils import timezone

from devices.models import Device, Level, Share
from devices.selectors import device_access_list, effective_access

pytestmark = pytest.mark.django_db

V, C, M = Level.VIEW, Level.CONTROL, Level.MANAGE
WINDOWS = {
    "open": {},
    "current": {"starts_at": -2, "expires_at": 2},
    "expired": {"starts_at": -5, "expires_at": -1},
    "future": {"starts_at": 1, "expires_at": 5},
    "revoked": {"revoked_at": -1},
}


def make_share(world, user, kind, level, window):
    now = timezone.now()
    fields = {k: now + timedelta(hours=v) for k, v in WINDOWS[window].items()}
    target = {"device": world.lamp} if kind == "direct" else {"group": world.group}
    return Share.objects.create(tenant=world.tenant, grantee=user, created_by=world.owner, level=level,
                                **target, **fields)


CASES = [
    ([], None),
    ([("direct", V, "open")], V),
    ([("direct", C, "open")], C),
    ([("direct", M, "open")], M),
    ([("group", C, "open")], C),
    ([("direct", V, "open"), ("group", C, "open")], C),
    ([("direct", M, "open"), ("group", V, "open")], M),
    ([("direct", C, "current")], C),
    ([("direct", C, "expired")], None),
    ([("direct", C, "future")], None),
    ([("direct", C, "revoked")], None),
    ([("group", M, "expired"), ("direct", V, "open")], V),
    ([("group", M, "revoked"), ("direct", C, "future")], None),
    ([("direct", M, "expired"), ("group", C, "current")], C),
]


@pytest.mark.parametrize("specs, expected", CASES, ids=lambda v: str(v))
def test_effective_access_matrix(world, specs, expected):
    for kind, level, window in specs:
        make_share(world, world.alice, kind, level, window)
    access = effective_access(user=world.alice, device=world.lamp)
    assert (access.level if access else None) == expected
    if access:
        assert access.share.is_live() and access.share.grantee == world.alice
    # The lock is outside the group: only direct lamp shares exist, so never any access there.
    assert effective_access(user=world.alice, device=world.lock) is None
    visible = set(Device.objects.visible_to(world.alice))
    assert (world.lamp in visible) == (expected is not None)


def test_owner_is_above_all_and_admin_is_not_a_grant(world):
    assert effective_access(user=world.owner, device=world.lamp).level == Level.OWNER
    assert effective_access(user=world.admin, device=world.lamp) is None
    assert world.lamp in Device.objects.visible_to(world.admin)  # the console still shows it


def test_other_tenant_shares_never_count(world, other):
    Share.objects.create(tenant=other.tenant, device=other.lamp, grantee=other.alice, created_by=other.owner, level=M)
    assert effective_access(user=other.alice, device=world.lamp) is None
    assert not Device.objects.visible_to(other.alice).filter(tenant=world.tenant).exists()
    assert not Device.objects.visible_to(other.admin).filter(tenant=world.tenant).exists()


def test_access_list_agrees_with_effective_access(world):
    users = [world.alice, world.bob, world.carol]
    for user, (kind, level, window) in zip(
        users, [("direct", V, "open"), ("group", C, "current"), ("direct", M, "expired")], strict=True
    ):
        make_share(world, user, kind, level, window)
    make_share(world, world.bob, "direct", V, "open")
    rows = device_access_list(device=world.lamp)
    listed = {user: access.level for user, access in rows}
    assert rows[0][0] == world.owner
    expected = {world.owner: Level.OWNER}
    for user in itertools.chain(users, [world.admin]):
        access = effective_access(user=user, device=world.lamp)
        if access:
            expected[user] = access.level
    assert listed == expected == {world.owner: Level.OWNER, world.alice: V, world.bob: C}
