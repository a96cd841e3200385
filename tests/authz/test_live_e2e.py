"""Issue 15's acceptance as live clients see it (docs/live-access.md): a
real Celery worker on Redis pushes the snapshots to moto and cuts sessions
through local_iot's iot-data; local_iot runs the real authorizer on that
table; paho clients connect with credentials from the API. The verdict is
what a client observes: a disconnect, a CONNACK, a SUBACK, which messages
arrive."""
from datetime import timedelta

import pytest
from django.utils import timezone

from authz import tasks
from authz.models import AccessReceipt, SessionCut
from authz.snapshots import outbox
from devices import services
from devices.models import Level, Membership, Share, Tenant
from tests.factories import DeviceFactory
from tests.support.api import tenant_url
from tests.support.live_access import ADMINISTRATIVE_ACTION, Telemetry, receipt_done, written
from tests.support.processes import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def telemetry_of(device) -> str:
    return f"dev/{device.thing_name}/out/#"


def receipt_of(actor) -> AccessReceipt:
    """The receipt of `actor`'s latest narrowing, once it is done."""
    wait_until(lambda: AccessReceipt.objects.filter(actor=actor, finished_at__isnull=False).exists(),
               what="the receipt")
    return AccessReceipt.objects.filter(actor=actor).latest("created_at")


def test_a_revoked_sharee_stops_receiving_is_disconnected_and_cannot_come_back(live_e2e, world):
    granted = services.create_share(actor=world.owner, grantee=world.alice, device=world.lock, level=Level.VIEW)
    written()
    device = live_e2e.connected(live_e2e.creds(world.owner, device=world.lock))
    alices = live_e2e.creds(world.alice)
    sharee = live_e2e.connected(alices, telemetry_of(world.lock))
    telemetry = Telemetry(device, world.lock.thing_name).start()
    owners_api = live_e2e.client_for(world.owner)
    try:
        sharee.expect(f"dev/{world.lock.thing_name}/out/telemetry")

        with live_e2e.paused():  # so the answer comes before any push or cut has run
            response = owners_api.post(tenant_url("share-revoke", world, pk=granted.pk))
            assert response.status_code == 200, response.content
            receipt = response.json()["receipt"]
            assert (receipt["state"], receipt["closed"], receipt["clientIds"]) == ("pending", None, [])
            assert receipt["url"] == tenant_url("receipt-detail", world, pk=receipt["id"])
            assert not sharee.disconnected.is_set()
        assert sharee.wait_disconnected() == ADMINISTRATIVE_ACTION

        # The device goes on publishing; nothing more reaches the sharee.
        seen, sent = sharee.messages.qsize(), telemetry.sent
        wait_until(lambda: telemetry.sent >= sent + 10, what="ten more telemetry messages")
        assert sharee.messages.qsize() == seen
        assert not device.disconnected.is_set()  # the device lost nothing: it was not cut
    finally:
        telemetry.stop()

    done = receipt_done(owners_api, receipt)
    assert done["closed"] >= 1 and alices["clientId"] in done["clientIds"]
    assert not live_e2e.reaches(alices, telemetry_of(world.lock))


def test_a_transferred_device_is_disconnected_its_old_token_refused_and_a_new_one_admitted(live_e2e, world):
    old = live_e2e.creds(world.owner, device=world.lock)
    device = live_e2e.connected(old, f"dev/{world.lock.thing_name}/in/#")

    services.transfer_device(actor=world.owner, device=world.lock, new_owner=world.bob)
    assert device.wait_disconnected() == ADMINISTRATIVE_ACTION
    # Refused at connect (token_revoked: the cut-off in the device's snapshot).
    assert live_e2e.client(old).connect() is False

    new = live_e2e.creds(world.bob, device=world.lock)
    assert live_e2e.reaches(new, f"dev/{world.lock.thing_name}/in/#")


def test_a_removed_member_is_disconnected_and_refused(live_e2e, world):
    services.create_share(actor=world.owner, grantee=world.alice, device=world.lock, level=Level.CONTROL)
    written()
    alices = live_e2e.creds(world.alice)
    sharee = live_e2e.connected(alices, telemetry_of(world.lock))

    services.remove_member(actor=world.admin, membership=Membership.objects.get(tenant=world.tenant,
                                                                                user=world.alice))
    assert sharee.wait_disconnected() == ADMINISTRATIVE_ACTION
    assert live_e2e.client(alices).connect() is False
    assert receipt_of(world.admin).client_ids == [alices["clientId"]]


def test_a_new_share_disconnects_nobody(live_e2e, world):
    services.create_share(actor=world.owner, grantee=world.alice, device=world.lock, level=Level.VIEW)
    written()
    device = live_e2e.connected(live_e2e.creds(world.owner, device=world.lock))
    sharee = live_e2e.connected(live_e2e.creds(world.alice), telemetry_of(world.lock))

    services.create_share(actor=world.owner, grantee=world.alice, device=world.lamp, level=Level.CONTROL)
    written()
    # Published after the widening's snapshot is in DynamoDB: it still arrives.
    device.publish(f"dev/{world.lock.thing_name}/out/telemetry", b"after")
    assert sharee.received() == [(f"dev/{world.lock.thing_name}/out/telemetry", b"after")]
    assert not sharee.disconnected.is_set()
    assert not SessionCut.objects.exists()


def test_a_share_that_ends_while_connected_drops_the_client_at_its_end(live_e2e, world):
    ends = timezone.now() + timedelta(seconds=20)
    services.create_share(actor=world.owner, grantee=world.alice, device=world.lock, level=Level.VIEW,
                          expires_at=ends)
    written()
    alices = live_e2e.creds(world.alice)
    sharee = live_e2e.connected(alices, telemetry_of(world.lock))

    # The sweep as beat runs it, every half second here, until the client is dropped.
    def swept_and_dropped() -> bool:
        tasks.sweep_expired_shares()
        return sharee.disconnected.is_set()

    wait_until(swept_and_dropped, timeout=60, interval=0.5, what="the disconnect at the share's end")
    assert timezone.now() >= ends  # not before its end
    assert sharee.disconnect_reason == ADMINISTRATIVE_ACTION
    assert not live_e2e.reaches(alices, telemetry_of(world.lock))


def test_revoking_a_devices_credentials_disconnects_it_refuses_its_old_token_and_admits_a_new_one(live_e2e, world):
    old = live_e2e.creds(world.owner, device=world.lock)
    device = live_e2e.connected(old, f"dev/{world.lock.thing_name}/in/#")
    owners_api = live_e2e.client_for(world.owner)

    response = owners_api.post(tenant_url("device-credentials-revoke", world, device=world.lock.pk))
    assert response.status_code == 200, response.content
    assert device.wait_disconnected() == ADMINISTRATIVE_ACTION
    assert live_e2e.client(old).connect() is False  # token_revoked: the cut-off in the device's snapshot
    assert receipt_done(owners_api, response.json()["receipt"])["clientIds"] == [world.lock.thing_name]

    new = live_e2e.creds(world.owner, device=world.lock)
    assert live_e2e.reaches(new, f"dev/{world.lock.thing_name}/in/#")


def test_signing_out_all_apps_disconnects_and_refuses_both_of_a_persons_apps_and_nobody_else(live_e2e, world):
    services.create_share(actor=world.owner, grantee=world.alice, device=world.lock, level=Level.VIEW)
    written()
    phone, browser = live_e2e.creds(world.alice), live_e2e.creds(world.alice)
    alices = [live_e2e.connected(creds, telemetry_of(world.lock)) for creds in (phone, browser)]
    owner = live_e2e.connected(live_e2e.creds(world.owner), telemetry_of(world.lock))
    alices_api = live_e2e.client_for(world.alice)

    response = alices_api.post(tenant_url("iot-credentials-revoke", world))
    assert response.status_code == 200, response.content
    assert [client.wait_disconnected() for client in alices] == [ADMINISTRATIVE_ACTION] * 2
    receipt = receipt_done(alices_api, response.json()["receipt"])
    assert sorted(receipt["clientIds"]) == sorted([phone["clientId"], browser["clientId"]])
    assert live_e2e.client(phone).connect() is False
    assert live_e2e.client(browser).connect() is False

    # Every cut the sign-out caused has run: the owner's connection is still open and still answers.
    assert not owner.disconnected.is_set()
    assert owner.subscribe(f"dev/{world.lamp.thing_name}/out/#") == [1]
    # Alice's access stays: new credentials connect.
    assert live_e2e.reaches(live_e2e.creds(world.alice), telemetry_of(world.lock))


def test_revoking_everything_a_member_holds_leaves_them_only_what_they_own(live_e2e, world):
    own = DeviceFactory(tenant=world.tenant, owner=world.alice, device_type=world.type, name="Alice's plug")
    outbox.record_everyone(tenants=Tenant.objects.all())
    received = [services.create_share(actor=world.owner, grantee=world.alice, device=d, level=Level.CONTROL)
                for d in (world.lock, world.lamp)]
    written()
    alices = live_e2e.creds(world.alice)
    sharee = live_e2e.connected(alices, telemetry_of(world.lock))
    admins_api = live_e2e.client_for(world.admin)

    response = admins_api.post(tenant_url("member-revoke-access", world, user=world.alice.pk))
    assert response.status_code == 200, response.content
    body = response.json()
    assert sorted(body["revoked"]) == sorted(share.pk for share in received)
    assert not Share.objects.live().filter(grantee=world.alice).exists()
    assert sharee.wait_disconnected() == ADMINISTRATIVE_ACTION
    assert receipt_done(admins_api, body["receipt"])["clientIds"] == [alices["clientId"]]
    assert live_e2e.client(alices).connect() is False

    new = live_e2e.creds(world.alice)
    assert live_e2e.reaches(new, telemetry_of(own))
    assert not live_e2e.reaches(new, telemetry_of(world.lock))
    assert not live_e2e.reaches(new, telemetry_of(world.lamp))


def test_an_owner_sees_who_is_connected_and_an_admin_ends_a_session_without_revoking_it(live_e2e, world):
    for grantee in (world.alice, world.bob):
        services.create_share(actor=world.owner, grantee=grantee, device=world.lock, level=Level.VIEW)
    written()
    live_e2e.connected(live_e2e.creds(world.owner, device=world.lock))
    alices = live_e2e.creds(world.alice)
    sharee = live_e2e.connected(alices, telemetry_of(world.lock))
    live_e2e.creds(world.bob)  # a live token, never connected: not a session
    owners_api = live_e2e.client_for(world.owner)

    response = owners_api.get(tenant_url("device-sessions", world, device=world.lock.pk))
    assert response.status_code == 200, response.content
    sessions = {s["clientId"]: s for s in response.json()["results"]}
    assert set(sessions) == {world.lock.thing_name, alices["clientId"]}
    assert (sessions[world.lock.thing_name]["kind"], sessions[world.lock.thing_name]["user"]) == ("device", None)
    assert sessions[alices["clientId"]]["kind"] == "user"
    assert sessions[alices["clientId"]]["user"]["email"] == world.alice.email
    assert all(s["connectedSince"] for s in sessions.values())

    session = tenant_url("device-session", world, device=world.lock.pk, client_id=alices["clientId"])
    # The owner removes a guest by revoking; knocking a person's app off is a tenant admin's.
    assert owners_api.delete(session).status_code == 403
    ended = live_e2e.client_for(world.admin).delete(session)
    assert (ended.status_code, ended.json()) == (200, {"closed": True})
    assert sharee.wait_disconnected() == ADMINISTRATIVE_ACTION
    # A kick, not a revoke: the same credentials connect again.
    assert live_e2e.reaches(alices, telemetry_of(world.lock))
