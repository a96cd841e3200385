"""POST /tenants/{slug}/iot/credentials and /devices/{id}/credentials: what a
client gets, checked against the active key, AWS IoT's signing rule (through
openssl) and the authorizer's client-id rule."""
import base64
import json
import re
import subprocess
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from django.conf import settings as django_settings

from authz.models import IssuedCredential, SigningKey
from authz.tokens import rotation
from devices import services
from devices.models import AuditEvent, Level
from lambda_bridge import keys
from tests.factories import DeviceFactory
from tests.support.api import assert_error, rates, tenant_url

pytestmark = pytest.mark.django_db


@pytest.fixture
def active_key(table):
    rotation.rotate(actor=None)
    return SigningKey.objects.get(state=keys.ACTIVE)


def claims_of(body: dict, key: SigningKey) -> dict:
    return jwt.decode(body["token"], load_pem_public_key(key.public_pem.encode()), algorithms=["RS256"],
                      audience=django_settings.IOT_TOKEN_AUDIENCE, issuer=django_settings.IOT_TOKEN_ISSUER)


def ask(client_for, user, world, body=None, device=None):
    if device is None:
        path = tenant_url("iot-credentials", world)
    else:
        path = tenant_url("device-credentials", world, device=device.pk)
    return client_for(user).post(path, body or {}, format="json")


def authorizer_params(query: str) -> dict:
    """Each parameter once, URL-decoded, as the gateway reads them."""
    parsed = parse_qs(query, strict_parsing=True)
    assert all(len(values) == 1 for values in parsed.values()), parsed
    return {name: values[0] for name, values in parsed.items()}


def test_a_person_gets_a_token_for_their_own_app(world, client_for, active_key):
    response = ask(client_for, world.owner, world)
    assert response.status_code == 201, response.content
    assert response["Cache-Control"] == "no-store"
    body = response.json()
    assert set(body) == {"credential", "token", "kid", "tokenSignature", "tokenSignatureUrlEncoded", "authorizerName",
                         "tokenKeyName", "endpoint", "clientId", "expiresAt", "mqttUsername", "wssUrl"}
    assert (body["credential"], body["kid"]) == ("signed", active_key.kid)
    assert jwt.get_unverified_header(body["token"]) == {"alg": "RS256", "typ": "JWT", "kid": active_key.kid}
    claims = claims_of(body, active_key)
    tid, uid = world.tenant.pk, world.owner.pk
    assert claims["sub"] == f"user:{uid}" and claims["tid"] == tid and "scope" not in claims
    assert re.fullmatch(rf"u{tid}\.{uid}\.[A-Za-z0-9_-]{{12}}", body["clientId"])
    assert claims["cid"] == body["clientId"]
    assert claims["nbf"] == claims["iat"]
    assert claims["exp"] - claims["iat"] == django_settings.USER_TOKEN_LIFETIME_SECONDS
    assert re.fullmatch(r"[0-9a-f]{32}", claims["jti"])
    assert datetime.fromisoformat(body["expiresAt"]) == datetime.fromtimestamp(claims["exp"], UTC)
    assert body["endpoint"] == django_settings.IOT_ENDPOINT
    assert (body["authorizerName"], body["tokenKeyName"]) == ("devshare", "devshare-token")


def test_mqtt_username_and_wss_url_carry_the_token_and_signature_url_encoded(world, client_for, active_key):
    body = ask(client_for, world.owner, world).json()
    expected = {"x-amz-customauthorizer-name": body["authorizerName"], body["tokenKeyName"]: body["token"],
                "x-amz-customauthorizer-signature": body["tokenSignature"]}
    username, _, query = body["mqttUsername"].partition("?")
    assert username and authorizer_params(query) == expected
    # base64 has + / =: raw, a query parser would turn + into a space.
    assert "+" not in query and "/" not in query
    url = urlsplit(body["wssUrl"])
    assert (url.scheme, url.hostname, url.path) == ("wss", django_settings.IOT_ENDPOINT, "/mqtt")
    assert authorizer_params(url.query) == expected


def test_a_client_that_pastes_fields_into_a_url_as_given_needs_the_url_encoded_signature(world, client_for,
                                                                                         active_key):
    """What the JS SDK's newWebsocketMqttBuilderWithCustomAuth does: it joins
    the fields into the WebSocket URL without encoding them (issue 14, 7a)."""
    # Ask until a signature holds a `+`, the character a query parser turns into a space.
    body = next(b for b in iter(lambda: ask(client_for, world.owner, world).json(), None)
                if "+" in b["tokenSignature"])

    def pasted(signature: str) -> str:
        query = (f"x-amz-customauthorizer-name={body['authorizerName']}&{body['tokenKeyName']}={body['token']}"
                 f"&x-amz-customauthorizer-signature={signature}")
        return authorizer_params(query)["x-amz-customauthorizer-signature"]

    assert pasted(body["tokenSignature"]) != body["tokenSignature"]
    assert pasted(body["tokenSignatureUrlEncoded"]) == body["tokenSignature"]
    assert not set(body["tokenSignatureUrlEncoded"]) & set("+/=")
    assert f"x-amz-customauthorizer-signature={body['tokenSignatureUrlEncoded']}" in body["wssUrl"]


def test_openssl_accepts_the_token_signature_and_refuses_it_for_another_token(world, client_for, active_key,
                                                                              tmp_path):
    body = ask(client_for, world.owner, world).json()
    (tmp_path / "public.pem").write_text(active_key.public_pem)
    (tmp_path / "signature.bin").write_bytes(base64.b64decode(body["tokenSignature"], validate=True))

    def openssl_verify(data: str) -> subprocess.CompletedProcess:
        (tmp_path / "token.txt").write_text(data)
        return subprocess.run(["openssl", "dgst", "-sha256", "-verify", str(tmp_path / "public.pem"),
                               "-signature", str(tmp_path / "signature.bin"), str(tmp_path / "token.txt")],
                              capture_output=True, text=True, check=False)

    accepted = openssl_verify(body["token"])
    assert accepted.returncode == 0 and accepted.stdout.strip() == "Verified OK", accepted
    other = ask(client_for, world.owner, world).json()["token"]
    refused = openssl_verify(other)
    assert refused.returncode != 0 and "Verification failure" in refused.stdout + refused.stderr


def test_every_request_gets_a_fresh_client_id_and_jti(world, client_for, active_key):
    bodies = [ask(client_for, world.alice, world).json() for _ in range(3)]
    assert len({b["clientId"] for b in bodies}) == 3
    assert len({claims_of(b, active_key)["jti"] for b in bodies}) == 3
    assert IssuedCredential.objects.filter(principal=str(world.alice.pk)).count() == 3


def test_issuance_is_recorded_and_audited_without_the_token(world, client_for, active_key):
    body = ask(client_for, world.alice, world).json()
    claims = claims_of(body, active_key)
    record = IssuedCredential.objects.get()
    assert (record.tenant_id, record.kind, record.principal, record.client_id, record.jti, record.kid,
            record.issued_by_id) == (world.tenant.pk, "u", str(world.alice.pk), body["clientId"], claims["jti"],
                                     active_key.kid, world.alice.pk)
    assert int(record.expires_at.timestamp()) == claims["exp"]
    event = AuditEvent.objects.get(action="iot_credentials.issue")
    assert (event.tenant_id, event.actor_id, event.source) == (world.tenant.pk, world.alice.pk, "api")
    assert event.changes["client_id"] == body["clientId"]
    stored = json.dumps([event.changes, event.object_repr])
    for secret in (body["token"].rsplit(".", 1)[1], body["tokenSignature"], body["token"]):
        assert secret not in stored


def test_scope_by_devices_names_their_things(world, client_for, active_key):
    services.create_share(actor=world.owner, grantee=world.alice, device=world.lock, level=Level.VIEW)
    services.create_share(actor=world.owner, grantee=world.alice, device=world.lamp, level=Level.CONTROL)
    response = ask(client_for, world.alice, world, {"scope": {"devices": [world.lock.pk]}})
    assert response.status_code == 201, response.content
    claims = claims_of(response.json(), active_key)
    assert claims["scope"] == {"things": [world.lock.thing_name]}
    assert IssuedCredential.objects.get().scope == {"things": [world.lock.thing_name]}


def test_scope_by_group(world, client_for, active_key):
    response = ask(client_for, world.owner, world, {"scope": {"group": world.group.pk}})
    assert response.status_code == 201, response.content
    assert claims_of(response.json(), active_key)["scope"] == {"group": world.group.pk}


@pytest.mark.parametrize("scope, field", [
    ({}, "scope"),
    ({"devices": []}, "scope"),
    ({"devices": [1], "group": 1}, "scope"),
    ({"devices": ["lamp"]}, "scope"),
    ({"group": "home"}, "scope"),
    # Beyond any id (SQLite raised OverflowError: a 500).
    ({"devices": [10**30]}, "scope"),
    ({"devices": [2**63]}, "scope"),
    ({"group": 10**30}, "scope"),
])
def test_malformed_scopes_are_refused(world, client_for, active_key, scope, field):
    body = assert_error(ask(client_for, world.owner, world, {"scope": scope}), 400, "invalid")
    assert field in body["fields"], body
    assert not IssuedCredential.objects.exists()


# --- content types: JSON only, so that a scope is always the object it says ----------


SCOPE_TEXT = '{"devices": [%d]}'


def test_a_json_scope_is_in_the_token(world, client_for, active_key):
    response = client_for(world.owner).generic(
        "POST", tenant_url("iot-credentials", world), json.dumps({"scope": {"devices": [world.lock.pk]}}),
        content_type="application/json")
    assert response.status_code == 201, response.content
    assert claims_of(response.json(), active_key)["scope"] == {"things": [world.lock.thing_name]}


@pytest.mark.parametrize("encode", ["multipart", "urlencoded", "text"])
def test_other_content_types_are_refused_and_issue_nothing(world, client_for, active_key, encode):
    """A form field is text: `scope={"devices":[3]}` was not read as a scope,
    and the token came out unscoped (fail open)."""
    client, path = client_for(world.owner), tenant_url("iot-credentials", world)
    form = {"scope": SCOPE_TEXT % world.lock.pk}
    if encode == "multipart":
        response = client.post(path, form, format="multipart")
    elif encode == "urlencoded":
        response = client.generic("POST", path, "scope=" + SCOPE_TEXT % world.lock.pk,
                                  content_type="application/x-www-form-urlencoded")
    else:
        response = client.generic("POST", path, json.dumps(form), content_type="text/plain")
    assert_error(response, 415, "unsupported_media_type")
    assert not IssuedCredential.objects.exists()


def test_device_credentials_take_json_only_too(world, client_for, active_key):
    path = tenant_url("device-credentials", world, device=world.lock.pk)
    response = client_for(world.owner).post(path, {"lifetimeSeconds": "600"}, format="multipart")
    assert_error(response, 415, "unsupported_media_type")
    assert not IssuedCredential.objects.exists()


def test_scope_cannot_name_what_the_caller_cannot_see(world, other, client_for, active_key):
    cases = [{"devices": [world.lamp.pk, other.lamp.pk]}, {"group": other.group.pk}, {"devices": [world.lock.pk]}]
    for scope in cases:
        # carol sees neither the other tenant's objects nor the owner's unshared lock.
        body = assert_error(ask(client_for, world.carol, world, {"scope": scope}), 400, "invalid")
        assert "scope" in body["fields"]
    assert not IssuedCredential.objects.exists()
    assert not AuditEvent.objects.filter(action="iot_credentials.issue").exists()


def test_more_devices_than_one_connection_holds_answer_409_and_a_scope_gets_through(world, client_for,
                                                                                   active_key):
    devices = [DeviceFactory(tenant=world.tenant, owner=world.bob, device_type=world.type) for _ in range(60)]
    body = assert_error(ask(client_for, world.bob, world), 409, "scope_required")
    assert "60 devices" in body["detail"] and "scope" in body["detail"]
    assert not IssuedCredential.objects.exists()
    assert not AuditEvent.objects.filter(action="iot_credentials.issue").exists()

    scoped = ask(client_for, world.bob, world, {"scope": {"devices": [d.pk for d in devices[:10]]}})
    assert scoped.status_code == 201, scoped.content
    too_wide = assert_error(ask(client_for, world.bob, world, {"scope": {"devices": [d.pk for d in devices]}}),
                            409, "scope_required")
    assert "fewer" in too_wide["detail"]


def test_lifetime_can_be_shortened_but_not_stretched(world, client_for, active_key):
    response = ask(client_for, world.owner, world, {"lifetimeSeconds": 900})
    assert response.status_code == 201
    claims = claims_of(response.json(), active_key)
    assert claims["exp"] - claims["iat"] == 900
    for asked in (599, django_settings.USER_TOKEN_LIFETIME_SECONDS + 1, "long"):
        body = assert_error(ask(client_for, world.owner, world, {"lifetimeSeconds": asked}), 400, "invalid")
        assert list(body["fields"]) == ["lifetimeSeconds"], body
    assert IssuedCredential.objects.count() == 1


def test_device_credentials_for_its_owner_and_tenant_admins(world, client_for, active_key, settings):
    settings.DEVICE_TOKEN_LIFETIME_SECONDS = 7200
    for who in (world.owner, world.admin):
        response = ask(client_for, who, world, device=world.lamp)
        assert response.status_code == 201, response.content
        body = response.json()
        claims = claims_of(body, active_key)
        thing = world.lamp.thing_name
        assert (claims["sub"], claims["cid"], body["clientId"]) == (f"device:{thing}", thing, thing)
        assert claims["exp"] - claims["iat"] == 7200
    records = IssuedCredential.objects.filter(kind="d", principal=world.lamp.thing_name)
    assert sorted(r.issued_by_id for r in records) == sorted([world.owner.pk, world.admin.pk])
    assert AuditEvent.objects.filter(action="iot_credentials.issue", device_id=world.lamp.pk).count() == 2


def test_device_credentials_are_refused_to_sharees_and_hidden_from_strangers(world, client_for, active_key):
    services.create_share(actor=world.owner, grantee=world.alice, device=world.lamp, level=Level.MANAGE,
                          can_reshare=True)
    assert_error(ask(client_for, world.alice, world, device=world.lamp), 403, "permission_denied")
    assert_error(ask(client_for, world.bob, world, device=world.lamp), 404, "not_found")
    assert not IssuedCredential.objects.exists()


def test_without_an_active_key_or_an_endpoint_nothing_is_issued(world, client_for, table, settings, caplog):
    body = assert_error(ask(client_for, world.owner, world), 503, "iot_unavailable")
    # The caller hears that it failed; the operators' log says why.
    assert "signing_keys" not in body["detail"]
    assert "signing_keys rotate" in caplog.text
    rotation.rotate(actor=None)
    settings.IOT_ENDPOINT = ""
    assert_error(ask(client_for, world.owner, world, device=world.lamp), 503, "iot_unavailable")
    assert "IOT_ENDPOINT is not set" in caplog.text
    assert not IssuedCredential.objects.exists()
    assert not AuditEvent.objects.filter(action="iot_credentials.issue").exists()


def test_credentials_are_throttled_per_user(world, client_for, active_key, settings):
    rates(settings, iot_credentials="2/minute")
    assert [ask(client_for, world.owner, world).status_code for _ in range(2)] == [201, 201]
    limited = ask(client_for, world.owner, world, device=world.lamp)
    assert_error(limited, 429, "throttled")
    assert int(limited["Retry-After"]) > 0
    # Someone else's bucket is their own.
    assert ask(client_for, world.alice, world).status_code == 201
    assert IssuedCredential.objects.count() == 3


def test_sign_in_is_required(world, client_for, active_key):
    assert_error(ask(client_for, None, world), 401)
    assert not IssuedCredential.objects.exists()
