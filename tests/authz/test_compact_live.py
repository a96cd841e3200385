"""Compact device credentials live, end to end (issue 17's acceptance;
docs/credentials.md#compact-device-tokens, docs/live-access.md): the REST API
issues them, a real Celery worker on Redis pushes snapshots to moto and cuts
sessions through local_iot's iot-data, local_iot plays the unsigned
authorizer with the real Lambda on that table, and real clients use what the
API answered: `curl` publishing over HTTPS, paho with the MQTT username and
password.

The verdict is what a client observes (an HTTP status, a CONNACK, a
disconnect, the messages that arrive); why the Lambda refused is read from
its own log line, which local_iot prints as the Lambda would."""
import json
from dataclasses import replace
from urllib.parse import quote

import pytest

from authz.models import IssuedCredential
from authz.snapshots import outbox
from devices import services
from devices.models import Tenant
from lambda_bridge import compact, vocabulary
from tests.factories import DeviceFactory
from tests.support import compact_device
from tests.support.api import tenant_url
from tests.support.live_access import ADMINISTRATIVE_ACTION, receipt_done, written

pytestmark = pytest.mark.django_db(transaction=True)

COMPACT = vocabulary.COMPACT_CREDENTIAL


def commands_of(device) -> str:
    return f"dev/{device.thing_name}/in/#"


def telemetry_topic(device) -> str:
    return f"dev/{device.thing_name}/out/telemetry"


def curl_with_headers(live_e2e, creds: dict, topic: str, payload: str) -> int:
    """HTTPS publish as a device does with its parameters as headers
    (docs/credentials.md#compact-device-tokens): the authorizer's name and the token."""
    url = f"https://{creds['endpoint']}/topics/{quote(topic, safe='')}?qos=1"
    headers = {"x-amz-customauthorizer-name": creds["authorizerName"], creds["tokenKeyName"]: creds["token"]}
    return compact_device.curl_publish(url, payload, ca_file=live_e2e.iot.ca_file, headers=headers)


def curl_with_query(live_e2e, creds: dict, payload: str) -> int:
    """HTTPS publish to the API's own `httpsPublishUrl`: both parameters in the query string."""
    return compact_device.curl_publish(creds["httpsPublishUrl"], payload, ca_file=live_e2e.iot.ca_file)


def lambda_lines(capsys) -> list[dict]:
    """The Lambda's log lines printed since the last call."""
    out = capsys.readouterr().out.splitlines()
    return [json.loads(line) for line in out if line.startswith('{"event":"authorize"')]


def reasons(capsys) -> list[str]:
    return [line["reason"] for line in lambda_lines(capsys)]


# --- what the API answers, used as it is --------------------------------------------------


def test_curl_publishes_as_the_device_with_its_compact_credential_and_a_person_receives_it(live_e2e, world, capsys):
    device = live_e2e.creds(world.owner, device=world.lock, credential=COMPACT)
    assert (device["credential"], device["clientId"]) == (COMPACT, world.lock.thing_name)
    app = live_e2e.connected(live_e2e.creds(world.owner), f"dev/{world.lock.thing_name}/out/#")
    capsys.readouterr()

    # Outside the device's policy (its own commands, which apps send): refused, nothing published.
    assert curl_with_headers(live_e2e, device, f"dev/{world.lock.thing_name}/in/unlock", "not mine") == 403
    assert curl_with_headers(live_e2e, device, telemetry_topic(world.lock), '{"t":21.5}') == 200
    assert curl_with_query(live_e2e, device, '{"t":21.0}') == 200

    assert app.received(2) == [(telemetry_topic(world.lock), b'{"t":21.5}'),
                               (telemetry_topic(world.lock), b'{"t":21.0}')]
    assert app.nothing_received()
    # Each was judged as a compact credential, as the lock.
    judged = [(line["credential"], line["principal"], line["decision"]) for line in lambda_lines(capsys)]
    assert judged == [(COMPACT, f"device:{world.lock.thing_name}", "allow")] * 3


def test_paho_connects_with_the_apis_username_and_password_and_publishes_telemetry(live_e2e, world):
    device = live_e2e.creds(world.owner, device=world.lock, credential=COMPACT)
    app = live_e2e.connected(live_e2e.creds(world.owner), f"dev/{world.lock.thing_name}/out/#")
    lock = live_e2e.connected(device, commands_of(world.lock))

    assert lock.publish(telemetry_topic(world.lock), b'{"locked":true}') == 0
    assert app.received() == [(telemetry_topic(world.lock), b'{"locked":true}')]
    assert app.publish(f"dev/{world.lock.thing_name}/in/unlock", b"{}") == 0
    assert lock.received() == [(f"dev/{world.lock.thing_name}/in/unlock", b"{}")]
    assert IssuedCredential.objects.get(client_id=world.lock.thing_name).credential == COMPACT


# --- taking it away ----------------------------------------------------------------------


def test_a_transfer_ends_the_live_compact_connection_refuses_the_old_token_and_the_new_owners_works(
        live_e2e, world, capsys):
    old = live_e2e.creds(world.owner, device=world.lock, credential=COMPACT)
    lock = live_e2e.connected(old, commands_of(world.lock))

    services.transfer_device(actor=world.owner, device=world.lock, new_owner=world.bob)
    assert lock.wait_disconnected() == ADMINISTRATIVE_ACTION
    capsys.readouterr()
    assert live_e2e.client(old).connect() is False
    assert curl_with_headers(live_e2e, old, telemetry_topic(world.lock), "late") == 401
    assert reasons(capsys) == ["token_revoked"] * 2  # the cut-off in the device's snapshot

    new = live_e2e.creds(world.bob, device=world.lock, credential=COMPACT)
    bobs_app = live_e2e.connected(live_e2e.creds(world.bob), f"dev/{world.lock.thing_name}/out/#")
    assert live_e2e.reaches(new, commands_of(world.lock))
    assert curl_with_headers(live_e2e, new, telemetry_topic(world.lock), "bob's now") == 200
    assert bobs_app.received() == [(telemetry_topic(world.lock), b"bob's now")]


def test_revoking_the_devices_credentials_ends_its_compact_connection_and_only_a_later_token_works(
        live_e2e, world, capsys):
    old = live_e2e.creds(world.owner, device=world.lock, credential=COMPACT)
    lock = live_e2e.connected(old, commands_of(world.lock))
    owners_api = live_e2e.client_for(world.owner)

    response = owners_api.post(tenant_url("device-credentials-revoke", world, device=world.lock.pk))
    assert response.status_code == 200, response.content
    assert lock.wait_disconnected() == ADMINISTRATIVE_ACTION
    assert receipt_done(owners_api, response.json()["receipt"])["clientIds"] == [world.lock.thing_name]
    capsys.readouterr()
    assert live_e2e.client(old).connect() is False
    assert curl_with_query(live_e2e, old, "late") == 401
    assert reasons(capsys) == ["token_revoked"] * 2

    new = live_e2e.creds(world.owner, device=world.lock, credential=COMPACT)
    assert new["token"] != old["token"]
    assert live_e2e.reaches(new, commands_of(world.lock))
    assert curl_with_query(live_e2e, new, "after") == 200


# --- forged and re-signed ----------------------------------------------------------------


def one_character_off(thing: str) -> str:
    return thing[:-1] + ("x" if thing[-1] != "x" else "y")


def test_a_token_with_one_character_of_its_claims_changed_is_refused_at_connect(live_e2e, world, capsys):
    """The forgery names a real device of the tenant whose thing name differs
    from the lock's by one character: that device's own credential connects,
    the lock's token edited to name it does not."""
    neighbour = DeviceFactory(tenant=world.tenant, owner=world.owner, device_type=world.type,
                              thing_name=one_character_off(world.lock.thing_name))
    outbox.record_everyone(tenants=Tenant.objects.all())
    written()
    genuine = live_e2e.creds(world.owner, device=world.lock, credential=COMPACT)
    parsed = compact.parse(genuine["token"])
    forged = compact.encode(replace(parsed.claims, thing=neighbour.thing_name), kid=parsed.kid,
                            sign=lambda _: parsed.signature)
    capsys.readouterr()

    assert live_e2e.client({**genuine, "clientId": neighbour.thing_name, "mqttPassword": forged}).connect() is False
    assert reasons(capsys) == ["bad_signature"]
    assert live_e2e.reaches(live_e2e.creds(world.owner, device=neighbour, credential=COMPACT), commands_of(neighbour))


@pytest.mark.parametrize(("under", "reason"), [("the published kid", "bad_signature"),
                                               ("its own kid", "unknown_kid")])
def test_a_token_re_signed_by_another_ed25519_key_is_refused_at_connect(live_e2e, world, capsys, under, reason):
    genuine = live_e2e.creds(world.owner, device=world.lock, credential=COMPACT)
    parsed = compact.parse(genuine["token"])
    stranger = compact_device.CompactKey()
    kid = parsed.kid if under == "the published kid" else stranger.kid
    re_signed = compact.encode(parsed.claims, kid=kid, sign=stranger.private.sign)
    capsys.readouterr()

    assert live_e2e.client({**genuine, "mqttPassword": re_signed}).connect() is False
    assert reasons(capsys) == [reason]
    assert live_e2e.reaches(genuine, commands_of(world.lock))  # the same claims, signed by the platform
