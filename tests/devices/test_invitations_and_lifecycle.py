"""Invitations are checked again when accepted; leaving, deactivation and
transfer cut exactly what they should."""
import threading
import time
from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection
from django.utils import timezone

from devices import services
from devices.models import AuditEvent, Device, Invitation, Level, Membership, Share
from devices.selectors import effective_access

pytestmark = pytest.mark.django_db


def hours(n):
    return timezone.now() + timedelta(hours=n)


@pytest.fixture
def invitee(django_user_model):
    return django_user_model.objects.create_user(email="eve@example.test", password="x")


def reshare_invite(world, parent_kwargs, **invite_kwargs):
    """Alice holds a re-shareable grant and invites eve through it."""
    parent = services.create_share(actor=world.owner, grantee=world.alice, level=Level.MANAGE, can_reshare=True,
                                   **parent_kwargs)
    values = {"device": world.lamp, "level": Level.CONTROL} | invite_kwargs
    return parent, services.create_invitation(actor=world.alice, email="eve@example.test", **values)


class TestAcceptRechecksTheInviter:
    def test_parent_narrowed_after_sending(self, world, invitee):
        parent, invitation = reshare_invite(world, {"device": world.lamp}, level=Level.MANAGE, can_reshare=True)
        services.update_share(actor=world.owner, share=parent, level=Level.VIEW, can_reshare=False)
        with pytest.raises(ValidationError, match="can no longer share"):
            services.accept_invitation(actor=invitee, invitation=invitation)
        assert not Share.objects.filter(grantee=invitee).exists()
        assert not Membership.objects.filter(user=invitee).exists()

    def test_parent_expiry_cut_after_sending(self, world, invitee):
        parent, invitation = reshare_invite(world, {"device": world.lamp})
        services.update_share(actor=world.owner, share=parent, expires_at=hours(1))
        with pytest.raises(ValidationError, match="outlast"):
            services.accept_invitation(actor=invitee, invitation=invitation)

    def test_device_left_the_shared_group(self, world, invitee):
        _, invitation = reshare_invite(world, {"group": world.group})
        services.remove_device_from_group(actor=world.owner, device=world.lamp)
        with pytest.raises(ValidationError, match="can no longer share"):
            services.accept_invitation(actor=invitee, invitation=invitation)

    def test_invitation_to_the_new_owner_after_transfer(self, world):
        invitation = services.create_invitation(actor=world.owner, email=world.bob.email, device=world.lock,
                                                level=Level.VIEW)
        services.transfer_device(actor=world.owner, device=world.lock, new_owner=world.bob, keep_shares=True)
        with pytest.raises(ValidationError):
            services.accept_invitation(actor=world.bob, invitation=invitation)
        assert not Share.objects.filter(grantee=world.bob, device=world.lock).exists()

    def test_still_valid_invitation_is_accepted_as_a_reshare(self, world, invitee):
        parent, invitation = reshare_invite(world, {"device": world.lamp}, expires_at=None)
        share = services.accept_invitation(actor=invitee, invitation=invitation)
        assert (share.parent, share.created_by, share.level) == (parent, world.alice, Level.CONTROL)
        assert AuditEvent.objects.filter(action="invitation.accepted", actor=invitee).count() == 1

    def test_lapsed_invitation_does_not_block_a_new_one(self, world, invitee):
        old = services.create_invitation(actor=world.owner, email=invitee.email, device=world.lock, level=Level.VIEW,
                                         valid_for=timedelta(seconds=-1))
        new = services.create_invitation(actor=world.owner, email=invitee.email, device=world.lock, level=Level.VIEW)
        old.refresh_from_db()
        assert old.status == Invitation.Status.LAPSED and new.status == Invitation.Status.PENDING


class TestReshareEdits:
    def test_resharer_edits_within_the_grant_the_reshare_came_from(self, world):
        first = services.create_share(actor=world.owner, grantee=world.alice, device=world.lamp, level=Level.MANAGE,
                                      can_reshare=True, expires_at=hours(5))
        child = services.create_share(actor=world.alice, grantee=world.bob, device=world.lamp, level=Level.VIEW,
                                      expires_at=hours(4))
        assert child.parent == first
        # A second, wider grant does not let alice stretch a re-share made from the first.
        services.create_share(actor=world.owner, grantee=world.alice, group=world.group, level=Level.MANAGE,
                              can_reshare=True)
        with pytest.raises(ValidationError, match="outlast"):
            services.update_share(actor=world.alice, share=child, expires_at=None)


class TestLeaving:
    def test_removed_member_loses_pending_invitations(self, world):
        services.create_share(actor=world.owner, grantee=world.carol, device=world.lock, level=Level.VIEW)
        invitation = services.create_invitation(actor=world.owner, email=world.carol.email, device=world.lamp,
                                                level=Level.CONTROL)
        services.remove_member(actor=world.admin, membership=Membership.objects.get(user=world.carol))
        invitation.refresh_from_db()
        assert invitation.status == Invitation.Status.CANCELLED
        with pytest.raises(ValidationError):
            services.accept_invitation(actor=world.carol, invitation=invitation)
        assert not Membership.objects.filter(user=world.carol, tenant=world.tenant).exists()

    def test_deactivation_cuts_what_the_user_reshared(self, world, admin_user):
        services.create_share(actor=world.owner, grantee=world.alice, device=world.lock, level=Level.MANAGE,
                              can_reshare=True)
        services.create_share(actor=world.alice, grantee=world.bob, device=world.lock, level=Level.CONTROL)
        services.set_user_active(actor=admin_user, user=world.alice, is_active=False)
        assert effective_access(user=world.bob, device=world.lock) is None
        services.set_user_active(actor=admin_user, user=world.alice, is_active=True)
        world.alice.refresh_from_db()
        assert effective_access(user=world.alice, device=world.lock).level == Level.MANAGE
        assert effective_access(user=world.bob, device=world.lock) is None

    def test_former_owner_and_removed_member_stop_seeing_shares(self, world):
        services.create_share(actor=world.owner, grantee=world.alice, device=world.lock, level=Level.MANAGE,
                              can_reshare=True)
        services.create_share(actor=world.alice, grantee=world.bob, device=world.lock, level=Level.VIEW)
        assert Share.objects.visible_to(world.alice).count() == 2
        services.transfer_device(actor=world.owner, device=world.lock, new_owner=world.carol, keep_shares=True)
        assert not Share.objects.visible_to(world.owner).exists()
        services.remove_member(actor=world.admin, membership=Membership.objects.get(user=world.alice))
        assert not Share.objects.visible_to(world.alice).exists()


def test_superuser_registers_for_a_member_without_joining(world, admin_user):
    device = services.register_device(actor=admin_user, tenant=world.tenant, owner=world.bob, name="Fan",
                                      device_type=world.type)
    assert device.owner == world.bob
    with pytest.raises(ValidationError, match="The owner is not an active member"):
        services.register_device(actor=admin_user, tenant=world.tenant, name="Mine", device_type=world.type)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks need PostgreSQL")
@pytest.mark.django_db(transaction=True)
def test_revoke_racing_a_reshare_still_cascades(world):
    """A re-share holding its parent's lock makes a concurrent revoke wait, and
    the revoke's cascade then finds it."""
    from django.db import transaction

    parent = services.create_share(actor=world.owner, grantee=world.alice, device=world.lock, level=Level.MANAGE,
                                   can_reshare=True)
    locked, release, errors = threading.Event(), threading.Event(), []

    def reshare():
        try:
            with transaction.atomic():
                services.create_share(actor=world.alice, grantee=world.bob, device=world.lock, level=Level.VIEW)
                locked.set()
                release.wait(10)
        except Exception as error:  # noqa: BLE001  (whatever the thread hit, the test surfaces below)
            errors.append(error)
        finally:
            connection.close()  # this thread's own connection

    def revoke():
        try:
            services.revoke_share(actor=world.owner, share=parent)
        finally:
            connection.close()  # this thread's own connection

    first = threading.Thread(target=reshare)
    first.start()
    assert locked.wait(10)
    second = threading.Thread(target=revoke)
    second.start()
    time.sleep(0.3)  # let the revoke reach the lock; if it is slower, it simply runs after the commit
    release.set()
    first.join(10)
    second.join(10)
    assert not errors
    child = Share.objects.get(grantee=world.bob)
    assert child.revoked_at is not None
    assert effective_access(user=world.bob, device=Device.objects.get(pk=world.lock.pk)) is None


def test_password_change_in_console_is_audited(client, admin_user, world):
    client.force_login(admin_user)
    response = client.post(f"/admin/devices/user/{world.alice.pk}/password/",
                           {"password1": "N3w-passw0rd-xyz", "password2": "N3w-passw0rd-xyz"})
    assert response.status_code == 302
    world.alice.refresh_from_db()
    assert world.alice.check_password("N3w-passw0rd-xyz")
    event = AuditEvent.objects.get(action="user.password_change")
    assert (event.actor, event.object_id) == (admin_user, str(world.alice.pk))
    assert "N3w" not in str(event.changes)


def test_sent_invitation_is_view_only_in_console(client, world):
    invitation = services.create_invitation(actor=world.owner, email="x@example.test", device=world.lock,
                                            level=Level.VIEW)
    client.force_login(world.admin)
    assert client.post(f"/admin/devices/invitation/{invitation.pk}/change/", {"level": Level.MANAGE}).status_code == 403
    invitation.refresh_from_db()
    assert invitation.level == Level.VIEW


def test_grantee_leaving_needs_no_rights_but_strangers_cannot_revoke(world):
    share = services.create_share(actor=world.owner, grantee=world.alice, device=world.lock, level=Level.VIEW)
    with pytest.raises(PermissionDenied):
        services.revoke_share(actor=world.carol, share=share)
    assert len(services.revoke_share(actor=world.alice, share=share)) == 1
