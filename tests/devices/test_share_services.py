from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import timezone

from devices import services
from devices.models import AuditEvent, Invitation, Level, Share
from devices.selectors import effective_access

pytestmark = pytest.mark.django_db


def hours(n):
    return timezone.now() + timedelta(hours=n)


def share(world, grantee, *, actor=None, device=None, group=None, level=Level.VIEW, **kw):
    if device is None and group is None:
        device = world.lock
    return services.create_share(actor=actor or world.owner, grantee=grantee, device=device, group=group,
                                 level=level, **kw)


def level_of(user, device):
    access = effective_access(user=user, device=device)
    return None if access is None else access.level


class TestCreate:
    def test_owner_shares_and_grantee_gets_that_level(self, world):
        s = share(world, world.alice, level=Level.CONTROL)
        assert (s.grantee, s.level, s.created_by, s.parent) == (world.alice, Level.CONTROL, world.owner, None)
        assert level_of(world.alice, world.lock) == Level.CONTROL
        assert level_of(world.alice, world.lamp) is None

    def test_level_by_name(self, world):
        assert share(world, world.alice, level="manage").level == Level.MANAGE

    def test_identical_request_returns_the_same_share(self, world):
        first = share(world, world.alice, level=Level.CONTROL)
        assert share(world, world.alice, level=Level.CONTROL).pk == first.pk
        assert Share.objects.filter(grantee=world.alice).count() == 1

    def test_different_request_for_live_share_is_refused(self, world):
        share(world, world.alice, level=Level.VIEW)
        with pytest.raises(ValidationError, match="update it instead"):
            share(world, world.alice, level=Level.CONTROL)

    def test_expired_share_does_not_block_a_new_one(self, world):
        old = share(world, world.alice)
        Share.objects.filter(pk=old.pk).update(expires_at=hours(-1))
        new = share(world, world.alice, level=Level.CONTROL)
        old.refresh_from_db()
        assert old.revoked_at is not None and new.pk != old.pk
        assert level_of(world.alice, world.lock) == Level.CONTROL

    @pytest.mark.parametrize(
        "kwargs, message",
        [
            ({"level": "owner"}, "level"),
            ({"level": "superuser"}, "level"),
            ({"level": 99}, "level"),
            ({"level": Level.CONTROL, "can_reshare": True}, "re-sharing"),
            ({"expires_at": "past"}, "future"),
            ({"starts_at": "late", "expires_at": "early"}, "after the start"),
            ({"expires_at": "naive"}, "time zone"),
        ],
    )
    def test_bad_input_is_refused_and_writes_nothing(self, world, kwargs, message):
        values = {"past": hours(-1), "late": hours(5), "early": hours(2),
                  "naive": timezone.now().replace(tzinfo=None) + timedelta(hours=1)}
        kwargs = {k: values.get(v, v) if isinstance(v, str) else v for k, v in kwargs.items()}
        before = (Share.objects.count(), AuditEvent.objects.count())
        with pytest.raises(ValidationError, match=message):
            share(world, world.alice, **kwargs)
        assert (Share.objects.count(), AuditEvent.objects.count()) == before

    def test_target_must_be_exactly_one(self, world):
        with pytest.raises(ValidationError, match="exactly one"):
            services.create_share(actor=world.owner, grantee=world.alice, device=world.lamp, group=world.group,
                                  level=Level.VIEW)

    def test_no_share_to_owner_or_self(self, world):
        with pytest.raises(ValidationError, match="owner already"):
            share(world, world.owner)
        share(world, world.alice, level=Level.MANAGE, can_reshare=True)
        with pytest.raises(ValidationError, match="yourself"):
            share(world, world.alice, actor=world.alice)

    def test_grantee_from_another_tenant_is_refused(self, world, other):
        with pytest.raises(ValidationError, match="not an active member"):
            share(world, other.alice)
        assert not Share.objects.filter(grantee=other.alice).exists()

    def test_stranger_and_plain_sharee_cannot_share(self, world):
        share(world, world.alice, level=Level.CONTROL)
        for actor in (world.alice, world.bob):
            with pytest.raises(PermissionDenied):
                share(world, world.carol, actor=actor)
        assert not Share.objects.filter(grantee=world.carol).exists()

    def test_tenant_admin_may_share_any_device_of_the_tenant(self, world):
        s = share(world, world.alice, actor=world.admin, level=Level.CONTROL)
        assert s.created_by == world.admin and s.parent is None

    def test_tenant_admin_of_another_tenant_may_not(self, world, other):
        with pytest.raises(PermissionDenied):
            share(world, world.alice, actor=other.admin)


class TestReshare:
    def test_manage_with_reshare_may_share_up_to_its_level(self, world):
        parent = share(world, world.alice, level=Level.MANAGE, can_reshare=True)
        child = share(world, world.bob, actor=world.alice, level=Level.MANAGE)
        assert child.parent == parent and child.created_by == world.alice

    def test_manage_without_reshare_may_not(self, world):
        share(world, world.alice, level=Level.MANAGE, can_reshare=False)
        with pytest.raises(PermissionDenied):
            share(world, world.bob, actor=world.alice)

    def test_control_may_not_reshare(self, world):
        share(world, world.alice, level=Level.CONTROL)
        with pytest.raises(PermissionDenied):
            share(world, world.bob, actor=world.alice)

    def test_reshare_cannot_outlast_parent(self, world):
        share(world, world.alice, level=Level.MANAGE, can_reshare=True, expires_at=hours(5))
        with pytest.raises(ValidationError, match="outlast"):
            share(world, world.bob, actor=world.alice)
        with pytest.raises(ValidationError, match="outlast"):
            share(world, world.bob, actor=world.alice, expires_at=hours(6))
        assert share(world, world.bob, actor=world.alice, expires_at=hours(4)).expires_at < hours(5)

    def test_reshare_cannot_start_before_parent(self, world):
        starts = hours(1)
        share(world, world.alice, level=Level.MANAGE, can_reshare=True, starts_at=timezone.now() - timedelta(minutes=1))
        child = share(world, world.bob, actor=world.alice, starts_at=starts)
        assert child.starts_at == starts
        with pytest.raises(ValidationError, match="start before"):
            share(world, world.carol, actor=world.alice, starts_at=timezone.now() - timedelta(hours=1))

    def test_group_manage_share_allows_resharing_a_device_of_the_group(self, world):
        parent = share(world, world.alice, group=world.group, level=Level.MANAGE, can_reshare=True)
        child = share(world, world.bob, actor=world.alice, device=world.lamp, level=Level.CONTROL)
        assert child.parent == parent
        with pytest.raises(PermissionDenied):  # the lock is not in the group
            share(world, world.bob, actor=world.alice, device=world.lock)

    def test_reshare_of_a_group_needs_a_group_share(self, world):
        share(world, world.alice, device=world.lamp, level=Level.MANAGE, can_reshare=True)
        with pytest.raises(PermissionDenied):
            share(world, world.bob, actor=world.alice, group=world.group)


class TestRevoke:
    def test_revoke_cascades_down_the_chain(self, world):
        a = share(world, world.alice, level=Level.MANAGE, can_reshare=True)
        b = share(world, world.bob, actor=world.alice, level=Level.MANAGE, can_reshare=True)
        c = share(world, world.carol, actor=world.bob, level=Level.VIEW)
        sibling = share(world, world.admin, level=Level.VIEW)
        revoked = services.revoke_share(actor=world.owner, share=a)
        assert {s.pk for s in revoked} == {a.pk, b.pk, c.pk}
        assert {u: level_of(u, world.lock) for u in (world.alice, world.bob, world.carol)} == dict.fromkeys(
            (world.alice, world.bob, world.carol)
        )
        assert level_of(world.admin, world.lock) == Level.VIEW
        sibling.refresh_from_db()
        assert sibling.revoked_at is None
        events = AuditEvent.objects.filter(action="share.revoke").order_by("id")
        assert [e.object_id for e in events] == [str(a.pk), str(b.pk), str(c.pk)]
        assert [e.changes["cascade_from"] for e in events] == [None, a.pk, b.pk]

    def test_who_may_revoke(self, world):
        a = share(world, world.alice, level=Level.MANAGE, can_reshare=True)
        b = share(world, world.bob, actor=world.alice)
        with pytest.raises(PermissionDenied):
            services.revoke_share(actor=world.carol, share=b)
        services.revoke_share(actor=world.bob, share=b)  # the grantee may leave
        a.refresh_from_db()
        assert a.revoked_at is None
        with pytest.raises(ValidationError, match="already revoked"):
            services.revoke_share(actor=world.owner, share=b)

    def test_revoking_a_group_share_removes_group_reshares(self, world):
        g = share(world, world.alice, group=world.group, level=Level.MANAGE, can_reshare=True)
        share(world, world.bob, actor=world.alice, device=world.lamp)
        services.revoke_share(actor=world.admin, share=g)
        assert level_of(world.bob, world.lamp) is None and level_of(world.alice, world.lamp) is None

    def test_bulk_revoke_is_all_or_nothing(self, world, other):
        mine = share(world, world.alice)
        theirs = services.create_share(actor=other.owner, grantee=other.alice, device=other.lock, level=Level.VIEW)
        with pytest.raises(PermissionDenied):
            services.revoke_shares(actor=world.admin, shares=[mine, theirs])
        mine.refresh_from_db()
        assert mine.revoked_at is None


class TestUpdate:
    def test_owner_changes_level_and_window(self, world):
        s = share(world, world.alice)
        services.update_share(actor=world.owner, share=s, level=Level.CONTROL, expires_at=hours(3))
        s.refresh_from_db()
        assert (s.level, s.expires_at is not None) == (Level.CONTROL, True)
        update = AuditEvent.objects.filter(action="share.update", object_id=str(s.pk)).get()
        assert update.changes["after"]["level"] == "control"

    def test_dropping_reshare_revokes_children(self, world):
        a = share(world, world.alice, level=Level.MANAGE, can_reshare=True)
        b = share(world, world.bob, actor=world.alice)
        services.update_share(actor=world.owner, share=a, can_reshare=False)
        b.refresh_from_db()
        assert b.revoked_at is not None and level_of(world.bob, world.lock) is None
        assert level_of(world.alice, world.lock) == Level.MANAGE

    def test_shortening_parent_clamps_children(self, world):
        a = share(world, world.alice, level=Level.MANAGE, can_reshare=True)
        b = share(world, world.bob, actor=world.alice, expires_at=hours(10))
        services.update_share(actor=world.owner, share=a, expires_at=hours(2))
        b.refresh_from_db()
        assert b.revoked_at is None and b.expires_at <= hours(2)

    def test_resharer_cannot_raise_above_own_level(self, world):
        share(world, world.alice, level=Level.MANAGE, can_reshare=True, expires_at=hours(5))
        b = share(world, world.bob, actor=world.alice, expires_at=hours(4))
        with pytest.raises(ValidationError, match="outlast"):
            services.update_share(actor=world.alice, share=b, expires_at=hours(8))
        services.update_share(actor=world.alice, share=b, level=Level.CONTROL)
        b.refresh_from_db()
        assert b.level == Level.CONTROL and b.expires_at < hours(5)

    def test_grantee_cannot_upgrade_itself(self, world):
        s = share(world, world.alice)
        with pytest.raises(PermissionDenied):
            services.update_share(actor=world.alice, share=s, level=Level.MANAGE)
        s.refresh_from_db()
        assert s.level == Level.VIEW

    def test_revoked_share_cannot_be_updated(self, world):
        s = share(world, world.alice)
        services.revoke_share(actor=world.owner, share=s)
        with pytest.raises(ValidationError, match="revoked"):
            services.update_share(actor=world.owner, share=s, level=Level.CONTROL)


class TestInvitations:
    def test_accept_creates_membership_and_share(self, world, django_user_model):
        invitation = services.create_invitation(actor=world.owner, email="New.Person@Example.test",
                                                device=world.lock, level=Level.CONTROL)
        assert invitation.email == "new.person@example.test"
        newcomer = django_user_model.objects.create_user(email="new.person@example.test", password="x")
        s = services.accept_invitation(actor=newcomer, invitation=invitation)
        assert (s.grantee, s.level, s.created_by) == (newcomer, Level.CONTROL, world.owner)
        assert level_of(newcomer, world.lock) == Level.CONTROL
        invitation.refresh_from_db()
        assert (invitation.status, invitation.share) == (Invitation.Status.ACCEPTED, s)
        with pytest.raises(ValidationError, match="already accepted"):
            services.accept_invitation(actor=newcomer, invitation=invitation)

    def test_only_the_addressee_may_answer(self, world):
        invitation = services.create_invitation(actor=world.owner, email="x@example.test", device=world.lock,
                                                level=Level.VIEW)
        with pytest.raises(PermissionDenied):
            services.accept_invitation(actor=world.alice, invitation=invitation)
        assert not Share.objects.filter(grantee=world.alice).exists()

    def test_decline_and_lapse(self, world, django_user_model):
        user = django_user_model.objects.create_user(email="x@example.test", password="x")
        first = services.create_invitation(actor=world.owner, email=user.email, device=world.lock, level=Level.VIEW)
        services.decline_invitation(actor=user, invitation=first)
        first.refresh_from_db()
        assert first.status == Invitation.Status.DECLINED
        second = services.create_invitation(actor=world.owner, email=user.email, group=world.group, level=Level.VIEW,
                                            valid_for=timedelta(seconds=-1))
        with pytest.raises(ValidationError, match="lapsed"):
            services.accept_invitation(actor=user, invitation=second)

    def test_invitation_follows_reshare_rules(self, world):
        share(world, world.alice, level=Level.CONTROL)
        with pytest.raises(PermissionDenied):
            services.create_invitation(actor=world.alice, email="x@example.test", device=world.lock, level=Level.VIEW)
        services.create_invitation(actor=world.owner, email="y@example.test", device=world.lock, level=Level.VIEW)
        with pytest.raises(ValidationError, match="pending"):
            services.create_invitation(actor=world.owner, email="y@example.test", device=world.lock, level=Level.VIEW)

    def test_cancel(self, world):
        invitation = services.create_invitation(actor=world.owner, email="x@example.test", device=world.lock,
                                                level=Level.VIEW)
        with pytest.raises(PermissionDenied):
            services.cancel_invitation(actor=world.alice, invitation=invitation)
        services.cancel_invitation(actor=world.admin, invitation=invitation)
        invitation.refresh_from_db()
        assert invitation.status == Invitation.Status.CANCELLED
