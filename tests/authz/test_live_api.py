"""The live-access API (docs/api.md#live-access): sign every app out, revoke
a device's credentials, revoke what a member holds, a device's sessions,
receipts, and the receipts the existing narrowing endpoints now carry."""
import pytest

from authz.models import AccessReceipt, TokenCutoff
from authz.tokens import iot
from devices import services as domain
from devices.errors import ErrorCode
from devices.models import AuditEvent, Level, Membership, Share
from lambda_bridge import snapshot
from tests.support.api import assert_error, rates, tenant_url
from tests.support.live_sessions import StubbedDataPlane, issued

pytestmark = pytest.mark.django_db

RECEIPT_FIELDS = {"id", "url", "state", "closed", "clientIds", "createdAt", "finishedAt"}


@pytest.fixture
def data_plane(monkeypatch):
    plane = StubbedDataPlane()
    monkeypatch.setattr(iot, "gateway", lambda: plane.gateway)
    with plane.stub:
        yield plane
        plane.stub.assert_no_pending_responses()


def assert_pending_receipt(receipt, client, actor) -> None:
    """A receipt whose cuts have not run (tests bring no data plane unless asked)."""
    assert set(receipt) == RECEIPT_FIELDS
    assert (receipt["state"], receipt["closed"], receipt["clientIds"], receipt["finishedAt"]) == (
        "pending", None, [], None)
    stored = AccessReceipt.objects.get(pk=receipt["id"])
    assert stored.actor == actor
    again = client.get(receipt["url"])
    assert again.status_code == 200 and again.json()["id"] == receipt["id"]


# --- sign out, revoke a device's credentials ------------------------------------------


def test_sign_out_all_apps_answers_with_its_receipt(world, client_for):
    client = client_for(world.bob)
    response = client.post(tenant_url("iot-credentials-revoke", world))
    assert response.status_code == 200, response.content
    assert_pending_receipt(response.json()["receipt"], client, world.bob)
    assert TokenCutoff.objects.filter(kind=snapshot.USER, principal=str(world.bob.pk)).exists()


def test_sign_out_is_throttled_like_the_credentials_endpoint(world, client_for, settings):
    rates(settings, iot_credentials="1/minute")
    client = client_for(world.bob)
    assert client.post(tenant_url("iot-credentials-revoke", world)).status_code == 200
    assert_error(client.post(tenant_url("iot-credentials-revoke", world)), 429, "throttled")
    assert AuditEvent.objects.filter(action="iot_credentials.revoke").count() == 1


def test_device_credentials_revoke(world, client_for):
    domain.create_share(actor=world.owner, grantee=world.bob, device=world.lock, level=Level.CONTROL)
    path = tenant_url("device-credentials-revoke", world, device=world.lock.pk)
    assert_error(client_for(world.bob).post(path), 403, "permission_denied")
    assert_error(client_for(world.carol).post(path), 404, "not_found")
    assert not TokenCutoff.objects.exists()
    client = client_for(world.owner)
    response = client.post(path)
    assert response.status_code == 200, response.content
    assert_pending_receipt(response.json()["receipt"], client, world.owner)
    assert TokenCutoff.objects.filter(kind=snapshot.DEVICE, principal=world.lock.thing_name).exists()


# --- receipts -----------------------------------------------------------------------


def test_a_receipt_is_seen_by_its_actor_and_the_tenants_admins_only(world, client_for):
    receipt = client_for(world.bob).post(tenant_url("iot-credentials-revoke", world)).json()["receipt"]
    assert client_for(world.admin).get(receipt["url"]).status_code == 200
    assert_error(client_for(world.alice).get(receipt["url"]), 404, "not_found")
    assert_error(client_for(world.owner).get(receipt["url"]), 404, "not_found")


def test_share_revoke_answers_with_a_receipt_beside_the_revoked_ids(world, client_for):
    share = domain.create_share(actor=world.owner, grantee=world.bob, device=world.lock, level=Level.VIEW)
    client = client_for(world.owner)
    response = client.post(tenant_url("share-revoke", world, pk=share.pk))
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["revoked"] == [share.pk]
    assert_pending_receipt(body["receipt"], client, world.owner)


def test_transfer_answers_with_the_device_and_a_receipt(world, client_for):
    client = client_for(world.owner)
    response = client.post(tenant_url("device-transfer", world, device=world.lock.pk),
                           {"new_owner": world.bob.email}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["thing_name"] == world.lock.thing_name and body["owner"]["email"] == world.bob.email
    assert_pending_receipt(body["receipt"], client, world.owner)


# --- revoke everything a member holds ------------------------------------------------


def test_admin_revokes_everything_a_member_holds(world, client_for):
    share = domain.create_share(actor=world.owner, grantee=world.bob, device=world.lock, level=Level.VIEW)
    client = client_for(world.admin)
    response = client.post(tenant_url("member-revoke-access", world, user=world.bob.pk))
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["revoked"] == [share.pk]
    assert_pending_receipt(body["receipt"], client, world.admin)
    assert Membership.objects.filter(tenant=world.tenant, user=world.bob).exists()


def test_member_revoke_refusals_change_nothing(world, other, client_for):
    domain.create_share(actor=world.owner, grantee=world.bob, device=world.lock, level=Level.VIEW)
    path = tenant_url("member-revoke-access", world, user=world.bob.pk)
    assert_error(client_for(world.alice).post(path), 404, "not_found")  # members see only their own membership
    assert_error(client_for(world.admin).post(tenant_url("member-revoke-access", world, user=other.bob.pk)),
                 404, "not_found")
    own = tenant_url("member-revoke-access", world, user=world.alice.pk)
    assert_error(client_for(world.alice).post(own), 403, "permission_denied")
    assert_error(client_for(world.admin).post(tenant_url("member-revoke-access", world, user=world.admin.pk)),
                 400, "invalid", registry_code=ErrorCode.REVOKE_OWN_ACCESS)
    assert Share.objects.filter(revoked_at__isnull=True).count() == 1
    assert not TokenCutoff.objects.exists()


# --- live sessions ------------------------------------------------------------------


def test_owner_lists_who_is_connected(world, client_for, data_plane):
    domain.create_share(actor=world.owner, grantee=world.bob, device=world.lock, level=Level.CONTROL)
    token = issued(tenant=world.tenant, kind=snapshot.USER, principal=str(world.bob.pk), client_id="u.bob.app")
    data_plane.expect_unknown(world.lock.thing_name)
    data_plane.expect_connected(token.client_id)
    response = client_for(world.owner).get(tenant_url("device-sessions", world, device=world.lock.pk))
    assert response.status_code == 200, response.content
    [row] = response.json()["results"]
    assert (row["clientId"], row["kind"], row["user"]["email"]) == ("u.bob.app", "user", world.bob.email)
    assert row["connectedSince"] is not None and row["expiresAt"] is not None


def test_sessions_permissions(world, client_for, data_plane):
    domain.create_share(actor=world.owner, grantee=world.bob, device=world.lock, level=Level.MANAGE)
    path = tenant_url("device-sessions", world, device=world.lock.pk)
    assert_error(client_for(world.bob).get(path), 403, "permission_denied")
    assert_error(client_for(world.carol).get(path), 404, "not_found")


def test_sessions_when_aws_iot_fails_answer_503(world, client_for, data_plane):
    data_plane.expect_failure(world.lock.thing_name)
    response = client_for(world.owner).get(tenant_url("device-sessions", world, device=world.lock.pk))
    body = assert_error(response, 503, "iot_unavailable")
    assert "InternalFailure" not in body["detail"]


def test_end_a_session(world, client_for, data_plane):
    data_plane.expect_delete(world.lock.thing_name)
    response = client_for(world.admin).delete(
        tenant_url("device-session", world, device=world.lock.pk, client_id=world.lock.thing_name))
    assert response.status_code == 200, response.content
    assert response.json() == {"closed": True}
    assert AuditEvent.objects.filter(action="session.end", device_id=world.lock.pk).count() == 1


def test_ending_a_client_id_that_cannot_reach_the_device_is_404(world, client_for, data_plane):
    response = client_for(world.owner).delete(
        tenant_url("device-session", world, device=world.lock.pk, client_id=world.lamp.thing_name))
    assert_error(response, 404, "not_found")
    assert not AuditEvent.objects.filter(action="session.end").exists()


def test_ending_when_aws_iot_fails_is_503_and_unaudited(world, client_for, data_plane):
    data_plane.expect_failure(world.lock.thing_name, "delete_connection")
    response = client_for(world.owner).delete(
        tenant_url("device-session", world, device=world.lock.pk, client_id=world.lock.thing_name))
    assert_error(response, 503, "iot_unavailable")
    assert not AuditEvent.objects.filter(action="session.end").exists()


def test_listing_sessions_is_throttled_as_it_asks_aws_iot(world, client_for, data_plane, settings):
    rates(settings, iot_sessions="1/minute")
    data_plane.expect_unknown(world.lock.thing_name)
    client = client_for(world.owner)
    url = tenant_url("device-sessions", world, device=world.lock.pk)
    assert client.get(url).status_code == 200
    assert_error(client.get(url), 429, "throttled")
