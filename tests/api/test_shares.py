"""Shares, groups and invitations through the API."""
from datetime import timedelta

import pytest
from django.utils import timezone

from devices import services
from devices.errors import ErrorCode
from devices.models import AuditEvent, Device, DeviceGroup, Invitation, Level, Membership, Share
from tests.support.api import assert_error, tenant_url, url

pytestmark = pytest.mark.django_db


def later(hours):
    return (timezone.now() + timedelta(hours=hours)).isoformat()


def post_share(client, world, grantee_email, device=None, **terms):
    device = device or world.lock
    return client.post(tenant_url("device-shares", world, device=device.pk),
                       {"grantee": grantee_email, "level": "view", **terms})


class TestCreate:
    def test_share_to_a_member_then_identical_repeat_returns_it(self, world, client_for):
        owner = client_for(world.owner)
        first = post_share(owner, world, world.alice.email, level="control")
        assert first.status_code == 201, first.content
        body = first.json()
        assert (body["grantee"]["email"], body["level"], body["status"]) == (world.alice.email, "control", "live")
        again = post_share(owner, world, world.alice.email.upper(), level="control")
        assert again.status_code == 200 and again.json()["id"] == body["id"]
        assert Share.objects.filter(grantee=world.alice).count() == 1
        assert AuditEvent.objects.filter(action="share.create", source="api").count() == 1

    def test_different_terms_for_a_live_share_is_409(self, world, client_for):
        owner = client_for(world.owner)
        existing = post_share(owner, world, world.alice.email).json()
        response = post_share(owner, world, world.alice.email, level="manage")
        body = assert_error(response, 409, "conflict", registry_code=ErrorCode.SHARE_EXISTS)
        assert "grantee" in body["fields"] and "update it instead" in body["detail"]
        assert Share.objects.get(pk=existing["id"]).level == Level.VIEW

    def test_email_without_membership_becomes_an_invitation(self, world, other, client_for):
        owner = client_for(world.owner)
        response = post_share(owner, world, "New.Person@Example.test", level="control", expires_at=later(48))
        assert response.status_code == 202, response.content
        body = response.json()
        assert (body["email"], body["status"], body["level"]) == ("new.person@example.test", "pending", "control")
        # Someone with an account elsewhere is invited too: their account is not revealed.
        assert post_share(owner, world, other.alice.email).status_code == 202
        repeat = post_share(owner, world, "new.person@example.test", level="control", expires_at=body["expires_at"])
        assert repeat.status_code == 200 and repeat.json()["id"] == body["id"]
        different = post_share(owner, world, "new.person@example.test", level="view")
        pending = assert_error(different, 409, "conflict", registry_code=ErrorCode.INVITATION_PENDING)
        assert "grantee" in pending["fields"]
        assert Invitation.objects.filter(email="new.person@example.test").count() == 1
        assert not Share.objects.filter(grantee=other.alice).exists()

    @pytest.mark.parametrize(
        "terms, field",
        [
            ({"level": "owner"}, "level"),
            ({"level": "control", "can_reshare": True}, "can_reshare"),
            ({"expires_at": "2001-01-01T00:00:00Z"}, "expires_at"),
            ({"starts_at": "not a time"}, "starts_at"),
        ],
    )
    def test_bad_terms_are_400_with_the_field_and_write_nothing(self, world, client_for, terms, field):
        before = (Share.objects.count(), AuditEvent.objects.count())
        response = post_share(client_for(world.owner), world, world.alice.email, **terms)
        assert field in assert_error(response, 400, "invalid")["fields"]
        assert (Share.objects.count(), AuditEvent.objects.count()) == before

    def test_sharing_with_the_owner_is_400_not_409(self, world, client_for):
        services.create_share(actor=world.owner, grantee=world.alice, device=world.lock, level=Level.MANAGE,
                              can_reshare=True)
        response = post_share(client_for(world.alice), world, world.owner.email)
        assert_error(response, 400, "invalid", registry_code=ErrorCode.GRANTEE_IS_OWNER)

    def test_reshare_needs_the_right_and_stays_within_the_parent(self, world, client_for):
        services.create_share(actor=world.owner, grantee=world.alice, device=world.lock, level=Level.CONTROL)
        refused = post_share(client_for(world.alice), world, world.bob.email)
        assert_error(refused, 403, "permission_denied")
        parent = services.update_share(actor=world.owner, share=Share.objects.get(grantee=world.alice),
                                       level=Level.MANAGE, can_reshare=True,
                                       expires_at=timezone.now() + timedelta(hours=5))
        outlasting = post_share(client_for(world.alice), world, world.bob.email, level="control")
        assert "expires_at" in assert_error(outlasting, 400)["fields"]
        ok = post_share(client_for(world.alice), world, world.bob.email, level="control", expires_at=later(4))
        assert ok.status_code == 201 and ok.json()["parent"] == parent.pk

    def test_group_share(self, world, client_for):
        response = client_for(world.owner).post(tenant_url("group-shares", world, group=world.group.pk),
                                                {"grantee": world.bob.email, "level": "control"})
        assert response.status_code == 201
        assert response.json()["group"] == world.group.pk and response.json()["target_name"] == "Home"
        rows = client_for(world.bob).get(tenant_url("device-list", world)).json()["results"]
        assert [(r["name"], r["level"]) for r in rows] == [("Lamp", "control")]


class TestListUpdateRevoke:
    def test_outgoing_per_device_and_received(self, world, client_for):
        a = services.create_share(actor=world.owner, grantee=world.alice, device=world.lock, level=Level.VIEW)
        b = services.create_share(actor=world.owner, grantee=world.bob, device=world.lock, level=Level.CONTROL)
        services.create_share(actor=world.owner, grantee=world.alice, device=world.lamp, level=Level.VIEW)
        outgoing = client_for(world.owner).get(tenant_url("device-shares", world, device=world.lock.pk)).json()
        assert {r["id"] for r in outgoing["results"]} == {a.pk, b.pk}
        # A sharee sees only their own share of the device.
        own = client_for(world.alice).get(tenant_url("device-shares", world, device=world.lock.pk)).json()
        assert [r["id"] for r in own["results"]] == [a.pk]
        received = client_for(world.alice).get(tenant_url("share-list", world)).json()["results"]
        assert {r["target_name"] for r in received} == {"Lock", "Lamp"}

    def test_revoked_are_hidden_unless_asked(self, world, client_for):
        a = services.create_share(actor=world.owner, grantee=world.alice, device=world.lock, level=Level.VIEW)
        services.revoke_share(actor=world.owner, share=a)
        client = client_for(world.alice)
        assert client.get(tenant_url("share-list", world)).json()["results"] == []
        rows = client.get(tenant_url("share-list", world), {"status": "revoked"}).json()["results"]
        assert [(r["id"], r["status"]) for r in rows] == [(a.pk, "revoked")]

    def test_update_only_the_fields_sent(self, world, client_for):
        share = services.create_share(actor=world.owner, grantee=world.alice, device=world.lock, level=Level.VIEW,
                                      expires_at=timezone.now() + timedelta(days=2))
        response = client_for(world.owner).patch(tenant_url("share-detail", world, pk=share.pk), {"level": "control"})
        assert response.status_code == 200, response.content
        share.refresh_from_db()
        assert share.level == Level.CONTROL and share.expires_at is not None
        cleared = client_for(world.owner).patch(tenant_url("share-detail", world, pk=share.pk), {"expires_at": None})
        assert cleared.json()["expires_at"] is None

    def test_narrowing_cuts_reshares(self, world, client_for):
        parent = services.create_share(actor=world.owner, grantee=world.alice, device=world.lock, level=Level.MANAGE,
                                       can_reshare=True)
        child = services.create_share(actor=world.alice, grantee=world.bob, device=world.lock, level=Level.VIEW)
        client_for(world.owner).patch(tenant_url("share-detail", world, pk=parent.pk), {"can_reshare": False})
        child.refresh_from_db()
        assert child.revoked_at is not None

    def test_revoke_cascades_and_second_revoke_is_409(self, world, client_for):
        parent = services.create_share(actor=world.owner, grantee=world.alice, device=world.lock, level=Level.MANAGE,
                                       can_reshare=True)
        child = services.create_share(actor=world.alice, grantee=world.bob, device=world.lock, level=Level.VIEW)
        owner = client_for(world.owner)
        response = owner.post(tenant_url("share-revoke", world, pk=parent.pk))
        assert response.status_code == 200 and set(response.json()["revoked"]) == {parent.pk, child.pk}
        assert_error(owner.post(tenant_url("share-revoke", world, pk=parent.pk)), 409, "conflict",
                     registry_code=ErrorCode.SHARE_REVOKED)
        assert_error(owner.patch(tenant_url("share-detail", world, pk=parent.pk), {"level": "view"}), 409,
                     registry_code=ErrorCode.SHARE_REVOKED)

    def test_grantee_may_leave(self, world, client_for):
        share = services.create_share(actor=world.owner, grantee=world.alice, device=world.lock, level=Level.VIEW)
        assert client_for(world.alice).post(tenant_url("share-revoke", world, pk=share.pk)).status_code == 200
        assert client_for(world.alice).get(tenant_url("device-detail", world, pk=world.lock.pk)).status_code == 404


class TestGroups:
    def test_crud_and_membership_of_devices(self, world, client_for):
        owner = client_for(world.owner)
        created = owner.post(tenant_url("group-list", world), {"name": "Office"})
        assert created.status_code == 201 and created.json()["level"] == "owner"
        gid = created.json()["id"]
        assert_error(owner.post(tenant_url("group-list", world), {"name": "Office"}), 409, "conflict",
                     registry_code=ErrorCode.GROUP_NAME_TAKEN)
        assert owner.patch(tenant_url("group-detail", world, pk=gid), {"name": "Study"}).json()["name"] == "Study"
        added = owner.post(tenant_url("group-devices", world, group=gid), {"device": world.lock.pk})
        assert added.status_code == 200 and added.json()["group"] == gid
        assert_error(owner.post(tenant_url("group-devices", world, group=gid), {"device": world.lock.pk}), 409,
                     registry_code=ErrorCode.ALREADY_IN_GROUP)
        assert owner.delete(tenant_url("group-device", world, group=gid, device=world.lock.pk)).status_code == 204
        assert Device.objects.get(pk=world.lock.pk).group_id is None
        assert_error(owner.delete(tenant_url("group-device", world, group=gid, device=world.lock.pk)), 404)
        assert owner.delete(tenant_url("group-detail", world, pk=gid)).status_code == 204
        assert not DeviceGroup.objects.filter(pk=gid).exists()

    def test_only_own_devices_join(self, world, client_for):
        services.create_share(actor=world.owner, grantee=world.alice, device=world.lock, level=Level.MANAGE)
        gid = client_for(world.alice).post(tenant_url("group-list", world), {"name": "Mine"}).json()["id"]
        response = client_for(world.alice).post(tenant_url("group-devices", world, group=gid),
                                                {"device": world.lock.pk})
        assert "device" in assert_error(response, 400, registry_code=ErrorCode.GROUP_OWNER_MISMATCH)["fields"]

    def test_group_sharee_sees_group_with_level(self, world, client_for):
        services.create_share(actor=world.owner, grantee=world.bob, group=world.group, level=Level.CONTROL)
        rows = client_for(world.bob).get(tenant_url("group-list", world)).json()["results"]
        assert [(r["name"], r["level"]) for r in rows] == [("Home", "control")]


class TestInvitations:
    @pytest.fixture
    def eve(self, django_user_model):
        return django_user_model.objects.create_user(email="eve@example.test", password="pw")

    def invite(self, world, **kw):
        return services.create_invitation(actor=world.owner, email="eve@example.test", device=world.lock,
                                          level=Level.CONTROL, **kw)

    def test_list_mine_and_accept_joins_the_tenant(self, world, eve, client_for):
        invitation = self.invite(world)
        client = client_for(eve)
        rows = client.get(url("invitation-list")).json()["results"]
        assert [(r["id"], r["tenant"]["slug"], r["target_name"]) for r in rows] == [(invitation.pk, "acme", "Lock")]
        response = client.post(url("invitation-accept", pk=invitation.pk))
        assert response.status_code == 201, response.content
        assert response.json()["level"] == "control"
        assert Membership.objects.filter(user=eve, tenant=world.tenant).exists()
        assert client.get(tenant_url("device-list", world)).json()["count"] == 1
        assert_error(client.post(url("invitation-accept", pk=invitation.pk)), 409, "conflict",
                     registry_code=ErrorCode.INVITATION_NOT_PENDING)

    def test_decline(self, world, eve, client_for):
        invitation = self.invite(world)
        response = client_for(eve).post(url("invitation-decline", pk=invitation.pk))
        assert response.status_code == 200 and response.json()["status"] == "declined"
        assert not Membership.objects.filter(user=eve).exists()

    def test_someone_elses_invitation_is_404(self, world, eve, client_for):
        invitation = self.invite(world)
        assert_error(client_for(world.alice).post(url("invitation-accept", pk=invitation.pk)), 404, "not_found")
        invitation.refresh_from_db()
        assert invitation.status == Invitation.Status.PENDING

    def test_sender_lists_and_cancels(self, world, eve, client_for):
        invitation = self.invite(world)
        owner = client_for(world.owner)
        rows = owner.get(tenant_url("tenant-invitation-list", world), {"status": "pending"}).json()["results"]
        assert [r["id"] for r in rows] == [invitation.pk]
        assert owner.post(tenant_url("invitation-cancel", world, pk=invitation.pk)).json()["status"] == "cancelled"
        assert_error(owner.post(tenant_url("invitation-cancel", world, pk=invitation.pk)), 409,
                     registry_code=ErrorCode.INVITATION_NOT_PENDING)
        assert_error(client_for(eve).post(url("invitation-accept", pk=invitation.pk)), 409,
                     registry_code=ErrorCode.INVITATION_NOT_PENDING)
