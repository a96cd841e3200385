"""The console's live access (docs/console.md#live-access): the Device and
Membership actions, a device's live sessions with "End session", the
confirmation pages, and the receipts list scoped like the API."""
import pytest
from django.urls import reverse

from authz.live import services as live
from authz.models import AccessReceipt, TokenCutoff
from authz.tokens import iot
from devices import services
from devices.models import AuditEvent, Level, Membership, Share
from lambda_bridge import snapshot
from tests.support.live_sessions import StubbedDataPlane, issued

pytestmark = pytest.mark.django_db

RECEIPTS = reverse("admin:authz_accessreceipt_changelist")


@pytest.fixture
def data_plane(monkeypatch):
    plane = StubbedDataPlane()
    monkeypatch.setattr(iot, "gateway", lambda: plane.gateway)
    with plane.stub:
        yield plane
        plane.stub.assert_no_pending_responses()


def sessions_page(device):
    return reverse("admin:authz_accessreceipt_device_sessions", args=[device.pk])


def test_device_action_leads_to_its_sessions_page(client, world):
    client.force_login(world.admin)
    response = client.post(reverse("admin:devices_device_changelist"),
                           {"action": "show_live_sessions", "_selected_action": [world.lock.pk]})
    assert response.status_code == 302 and response["Location"] == sessions_page(world.lock)


def test_device_actions_take_one_device_at_a_time(client, world):
    client.force_login(world.admin)
    response = client.post(reverse("admin:devices_device_changelist"),
                           {"action": "revoke_credentials", "_selected_action": [world.lock.pk, world.lamp.pk]},
                           follow=True)
    assert "Select exactly one." in response.content.decode()
    assert not TokenCutoff.objects.exists()


def test_sessions_page_lists_and_ends_a_session(client, world, data_plane):
    services.create_share(actor=world.owner, grantee=world.bob, device=world.lock, level=Level.CONTROL)
    token = issued(tenant=world.tenant, kind=snapshot.USER, principal=str(world.bob.pk), client_id="u.bob.phone")
    data_plane.expect_unknown(world.lock.thing_name)
    data_plane.expect_connected(token.client_id)
    client.force_login(world.admin)
    page = client.get(sessions_page(world.lock)).content.decode()
    assert "u.bob.phone" in page and world.bob.email in page and "End session" in page

    data_plane.expect_delete(token.client_id)
    response = client.post(sessions_page(world.lock), {"client_id": token.client_id})
    assert response.status_code == 302
    [event] = AuditEvent.objects.filter(action="session.end")
    assert (event.changes["client_id"], event.source) == ("u.bob.phone", "admin")


def test_ending_a_client_id_that_cannot_reach_the_device_is_refused(client, world, data_plane):
    client.force_login(world.admin)
    response = client.post(sessions_page(world.lock), {"client_id": world.lamp.thing_name}, follow=True)
    assert "Nothing done" in response.content.decode()
    assert not AuditEvent.objects.filter(action="session.end").exists()


def test_another_tenants_device_pages_are_404(client, world, other):
    client.force_login(world.admin)
    assert client.get(sessions_page(other.lock)).status_code == 404
    revoke = reverse("admin:authz_accessreceipt_revoke_device", args=[other.lock.pk])
    assert client.post(revoke).status_code == 404
    assert not TokenCutoff.objects.exists()


def test_revoking_a_devices_credentials_after_confirmation(client, world):
    client.force_login(world.admin)
    revoke = reverse("admin:authz_accessreceipt_revoke_device", args=[world.lock.pk])
    assert "Revoke the device&#x27;s credentials" in client.get(revoke).content.decode()
    assert not TokenCutoff.objects.exists()  # the GET only asks
    assert client.post(revoke).status_code == 302
    assert set(TokenCutoff.objects.values_list("kind", "principal")) == {(snapshot.DEVICE, world.lock.thing_name)}


def bobs_membership_action(client, world, action: str, confirmation: str) -> Share:
    """Bob holds a share; a tenant admin picks `action` on his membership,
    is sent to the `confirmation` page (nothing done yet) and confirms."""
    share = services.create_share(actor=world.owner, grantee=world.bob, device=world.lock, level=Level.VIEW)
    membership = Membership.objects.get(tenant=world.tenant, user=world.bob)
    client.force_login(world.admin)
    response = client.post(reverse("admin:devices_membership_changelist"),
                           {"action": action, "_selected_action": [membership.pk]})
    confirm = reverse(f"admin:authz_accessreceipt_{confirmation}", args=[membership.pk])
    assert response["Location"] == confirm
    assert Share.objects.get(pk=share.pk).revoked_at is None and not TokenCutoff.objects.exists()
    client.post(confirm)
    return share


def test_membership_action_then_confirmation_revokes_everything(client, world):
    share = bobs_membership_action(client, world, "revoke_everything", "revoke_member")
    membership = Membership.objects.get(tenant=world.tenant, user=world.bob)
    assert Share.objects.get(pk=share.pk).revoked_at is not None
    assert Membership.objects.filter(pk=membership.pk).exists()
    assert AuditEvent.objects.get(action="membership.revoke_access").source == "admin"


def test_revoking_yourself_shows_the_refusal(client, world):
    membership = Membership.objects.get(tenant=world.tenant, user=world.admin)
    client.force_login(world.admin)
    response = client.post(reverse("admin:authz_accessreceipt_revoke_member", args=[membership.pk]), follow=True)
    assert "Nothing done" in response.content.decode()
    assert not TokenCutoff.objects.exists()


def test_receipts_list_is_scoped(client, world, other):
    live.sign_out_apps(actor=world.bob, tenant=world.tenant)
    live.sign_out_apps(actor=other.bob, tenant=other.tenant)
    client.force_login(world.admin)
    shown = list(client.get(RECEIPTS).context["cl"].result_list)
    assert [r.tenant for r in shown] == [world.tenant]
    assert len(AccessReceipt.objects.all()) == 2


def test_membership_action_then_confirmation_signs_the_persons_apps_out_and_keeps_their_shares(client, world):
    share = bobs_membership_action(client, world, "sign_out_apps", "sign_out_member")
    assert set(TokenCutoff.objects.values_list("kind", "principal")) == {(snapshot.USER, str(world.bob.pk))}
    assert Share.objects.get(pk=share.pk).revoked_at is None
    event = AuditEvent.objects.get(action="iot_credentials.revoke")
    assert (event.actor, event.changes["user"], event.source) == (world.admin, world.bob.email, "admin")


def test_only_a_tenant_admin_signs_someone_else_out(world):
    from django.core.exceptions import PermissionDenied

    with pytest.raises(PermissionDenied):
        live.sign_out_apps(actor=world.alice, tenant=world.tenant, user=world.bob)
    assert not TokenCutoff.objects.exists()
