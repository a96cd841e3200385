"""Compact device tokens from the Django side (docs/credentials.md#compact-device-tokens):
issued by the service, the API, the signing keys' Ed25519 halves published to
the (moto) key item, and the real authorizer Lambda answering the unsigned
authorizer's events against the table the platform pushed."""
import dataclasses
import json
import logging
from datetime import timedelta

import pytest
from django.core import checks as django_checks
from django.utils import timezone

from authz import checks
from authz.management.commands.authorize import lambda_environment
from authz.models import IssuedCredential, SigningKey
from authz.snapshots import store
from authz.tokens import credentials, rotation, signing_keys, simulator
from devices import services
from devices.errors import ErrorCode
from devices.models import AuditEvent, Device, Membership
from lambda_bridge import compact, keys, tokens
from lambda_bridge.evaluator import RESOURCE_TYPES, Connection
from tests.authz.signing_helpers import Clock
from tests.factories import UserFactory
from tests.lambda_bridge.spec import expected_of_device, probes
from tests.support.api import assert_error, tenant_url

pytestmark = pytest.mark.django_db

COMPACT = {"credential": "compact"}


def compact_for(device, actor=None, **kwargs) -> credentials.Credentials:
    return credentials.issue_device_credentials(actor=actor or device.owner, device=device,
                                                credential="compact", **kwargs)


def unsigned(creds: credentials.Credentials, via: str = "mqtt") -> tuple[dict, dict]:
    """A freshly started authorizer Lambda's answer to the unsigned
    authorizer's event for this token: (response, log line)."""
    event = simulator.compact_event(creds, via=via)
    response, log_line, _ = simulator.invoke(event, lambda_environment())
    return response, log_line or {}


def ask(client_for, user, world, device=None, body=None):
    path = (tenant_url("iot-credentials", world) if device is None
            else tenant_url("device-credentials", world, device=device.pk))
    return client_for(user).post(path, body or {}, format="json")


# --- issuance ---------------------------------------------------------------------------


def test_the_api_gives_a_device_what_a_compact_token_needs_and_nothing_else(pushed, world, client_for, settings):
    settings.IOT_COMPACT_AUTHORIZER_NAME = "frugal-auth"
    response = ask(client_for, world.owner, world, world.lamp, COMPACT)
    assert response.status_code == 201, response.content
    assert response["Cache-Control"] == "no-store"
    body = response.json()
    assert set(body) == {"credential", "token", "kid", "authorizerName", "tokenKeyName", "endpoint", "clientId",
                         "expiresAt", "mqttUsername", "mqttPassword", "httpsPublishUrl"}
    thing = world.lamp.thing_name
    active = SigningKey.objects.get(state=keys.ACTIVE)
    assert (body["credential"], body["clientId"], body["kid"], body["authorizerName"]) == (
        "compact", thing, active.compact_kid, "frugal-auth")
    assert body["mqttUsername"] == "?x-amz-customauthorizer-name=frugal-auth"
    assert body["mqttPassword"] == body["token"]
    assert len(body["token"]) <= compact.MAX_CHARS
    parsed = compact.parse(body["token"])
    assert keys.b64(parsed.kid) == active.compact_kid
    assert (parsed.claims.thing, parsed.claims.tenant) == (thing, world.tenant.pk)
    assert body["httpsPublishUrl"] == (f"https://{settings.IOT_ENDPOINT}/topics/dev/{thing}/out/telemetry?qos=1"
                                       f"&x-amz-customauthorizer-name=frugal-auth"
                                       f"&{settings.IOT_TOKEN_KEY_NAME}={body['token']}")


def test_signed_stays_the_default_and_says_so(pushed, world, client_for):
    body = ask(client_for, world.owner, world, world.lamp).json()
    assert body["credential"] == "signed" and body["tokenSignature"] and body["wssUrl"]
    assert "mqttPassword" not in body and "httpsPublishUrl" not in body
    assert IssuedCredential.objects.get().credential == "signed"


def test_a_persons_app_never_gets_a_compact_token(pushed, world, client_for):
    body = assert_error(ask(client_for, world.alice, world, body=COMPACT), 400,
                        registry_code=ErrorCode.COMPACT_FOR_DEVICES_ONLY)
    assert list(body["fields"]) == ["credential"]
    assert_error(ask(client_for, world.owner, world, world.lamp, {"credential": "tiny"}), 400, "invalid")
    assert not IssuedCredential.objects.exists()


def test_compact_credentials_stay_inside_their_tenant(pushed, world, other, client_for):
    """Another tenant's admin cannot see the device, let alone get its compact token."""
    assert_error(ask(client_for, other.admin, world, world.lamp, COMPACT), 404, "not_found")
    assert_error(client_for(other.admin).post(tenant_url("device-credentials", other, device=world.lamp.pk),
                                              COMPACT, format="json"), 404, "not_found")
    assert ask(client_for, other.admin, other, other.lamp, COMPACT).status_code == 201
    assert list(IssuedCredential.objects.values_list("tenant_id", "principal")) == [
        (other.tenant.pk, other.lamp.thing_name)]


def test_only_the_owner_or_a_tenant_admin_issues_one(pushed, world, other):
    for actor in (world.alice, other.admin):
        with pytest.raises(credentials.PermissionDenied):
            compact_for(world.lamp, actor=actor)
    assert compact_for(world.lamp, actor=world.admin).credential == "compact"


def test_a_thing_name_too_long_for_a_compact_token_is_refused_and_nothing_recorded(pushed, world, client_for):
    long_name = Device.objects.create(tenant=world.tenant, owner=world.owner, device_type=world.type, name="Long",
                                      thing_name="t" * 80)
    body = assert_error(ask(client_for, world.owner, world, long_name, COMPACT), 400,
                        registry_code=ErrorCode.COMPACT_TOKEN_TOO_LARGE)
    assert "use a signed one" in body["detail"]
    assert not IssuedCredential.objects.exists()
    assert not AuditEvent.objects.filter(action="iot_credentials.issue").exists()
    # The signed kind has room for it.
    assert ask(client_for, world.owner, world, long_name).status_code == 201


def test_the_longest_thing_name_that_fits(pushed, world):
    """Where the ceiling falls for this tenant id: one character more is refused."""
    fits = None
    for length in range(30, 80):
        device = Device.objects.create(tenant=world.tenant, owner=world.owner, device_type=world.type,
                                       name=f"L{length}", thing_name="t" * length)
        try:
            issued = compact_for(device)
        except credentials.DomainError:
            break
        assert len(issued.token) <= compact.MAX_CHARS
        fits = length
    # The table in docs/credentials.md#compact-device-tokens: CBOR spends 1,
    # 2, 3 or 5 bytes on the tenant id.
    tenant = world.tenant.pk
    assert fits == (50 if tenant < 24 else 49 if tenant < 256 else 48 if tenant < 65536 else 46)


def test_the_record_and_the_audit_say_which_kind_and_never_hold_the_token(pushed, world, caplog):
    caplog.set_level(logging.DEBUG)
    issued = compact_for(world.lamp)
    record = IssuedCredential.objects.get()
    assert (record.credential, record.kind, record.principal, record.client_id, record.kid) == (
        "compact", "d", world.lamp.thing_name, world.lamp.thing_name, issued.kid)
    assert len(record.jti) == 32 and record.jti not in issued.token
    event = AuditEvent.objects.get(action="iot_credentials.issue")
    assert event.changes["credential"] == "compact" and event.changes["kid"] == issued.kid
    stored = json.dumps([event.changes, event.object_repr, str(record)])
    logged = caplog.text
    for text in (stored, logged, repr(issued)):
        assert issued.token not in text and issued.token[-40:] not in text


def test_two_issuers_of_the_same_token_each_get_a_record_and_removing_either_revokes_it(pushed, world):
    """Ed25519 signatures are deterministic: the owner and an admin asking in
    the same second get the same token. Each issuance is recorded with its
    issuer, so removing the admin still finds the device and cuts it off."""
    now = timezone.now()
    first, second = compact_for(world.lamp, now=now), compact_for(world.lamp, actor=world.admin, now=now)
    assert first.token == second.token
    records = IssuedCredential.objects.order_by("pk")
    assert [r.issued_by for r in records] == [world.owner, world.admin]
    assert len({r.jti for r in records}) == 2
    assert AuditEvent.objects.filter(action="iot_credentials.issue").count() == 2
    assert unsigned(first)[1]["reason"] == "ok"

    membership = Membership.objects.get(tenant=world.tenant, user=world.admin)
    pushed(lambda: services.remove_member(actor=UserFactory(is_superuser=True), membership=membership))
    assert unsigned(first)[1]["reason"] == "token_revoked"


# --- the signing keys' compact halves ------------------------------------------------------


def test_publication_writes_each_slots_compact_half_and_it_verifies_what_django_issued(pushed, world):
    rotation.stage(actor=None)
    ring = keys.from_item(store.get_item(keys.ITEM_KEY))
    for key in SigningKey.objects.exclude(state=keys.RETIRED):
        slot = ring.slots[key.slot]
        assert (slot.compact_kid, slot.compact_public) == (key.compact_kid, key.compact_public)
    assert len({s.compact_kid for s in ring.slots.values()}) == 2
    issued = compact_for(world.lamp)
    cache = tokens.KeyCache(store.get_item, ttl=60)
    claims = tokens.verify_compact(issued.token, cache, leeway=0, now=int(timezone.now().timestamp()))
    assert (claims.kind, claims.principal, claims.client_id, claims.tenant) == (
        "d", world.lamp.thing_name, world.lamp.thing_name, world.tenant.pk)
    assert claims.expires == int(issued.expires_at.timestamp())


def test_retire_erases_both_private_halves(pushed):
    clock = Clock()
    old = SigningKey.objects.get(state=keys.ACTIVE)
    rotation.stage(actor=None, now=clock.now)
    rotation.promote(actor=None, now=clock.past_propagation())
    rotation.retire(actor=None, now=clock.past_token_lifetime())
    old.refresh_from_db()
    assert old.state == keys.RETIRED
    assert (old.private_key_encrypted, old.compact_private_encrypted) == ("", "")
    assert old.compact_kid and old.compact_public  # history keeps the public half


def test_a_new_key_never_shares_a_compact_kid_with_the_other_live_key(pushed, monkeypatch):
    live = SigningKey.objects.get(state=keys.ACTIVE)
    real, calls = compact.kid_for, []

    def clashing_once(public_raw):
        calls.append(public_raw)
        return keys._unb64(live.compact_kid) if len(calls) == 1 else real(public_raw)

    monkeypatch.setattr(compact, "kid_for", clashing_once)
    rotation.stage(actor=None)
    staged = SigningKey.objects.get(state=keys.STAGED)
    assert staged.compact_kid != live.compact_kid
    assert len(calls) >= 2 and staged.compact_kid == keys.b64(real(calls[1]))


def test_a_key_from_before_compact_tokens_cannot_issue_them_but_signs_as_before(pushed, world):
    SigningKey.objects.update(compact_kid="", compact_public="", compact_private_encrypted="")
    with pytest.raises(credentials.CredentialsUnavailable, match="no compact half.*signing_keys stage"):
        compact_for(world.lamp)
    assert not IssuedCredential.objects.exists()
    signed = credentials.issue_device_credentials(actor=world.owner, device=world.lamp)
    assert signed.credential == "signed" and signed.token_signature


def test_the_scheduled_rotation_gives_a_key_from_before_compact_tokens_a_successor_at_once(pushed, world):
    """An upgraded deployment: the hourly rotate stages a key with a compact
    half now rather than at the next 30-day rotation, and compact issuance
    works once it is promoted."""
    clock = Clock()
    SigningKey.objects.update(compact_kid="", compact_public="", compact_private_encrypted="")
    rotation.rotate(actor=None, now=clock.now)
    staged = SigningKey.objects.get(state=keys.STAGED)
    assert staged.compact_kid and staged.compact_public
    rotation.rotate(actor=None, now=clock.past_propagation())
    assert SigningKey.objects.get(state=keys.ACTIVE).pk == staged.pk
    assert unsigned(compact_for(world.lamp))[1]["reason"] == "ok"


def test_status_shows_which_slot_has_a_compact_half(pushed):
    rotation.stage(actor=None)
    SigningKey.objects.filter(state=keys.ACTIVE).update(compact_kid="", compact_public="",
                                                        compact_private_encrypted="")
    rows = {k.state: k.compact_kid for k in rotation.status().keys}
    assert rows[keys.ACTIVE] == ""
    assert rows[keys.STAGED] == SigningKey.objects.get(state=keys.STAGED).compact_kid != ""


@pytest.mark.parametrize("seconds, ok", [(60, True), (300, True), (59, False)])
def test_propagation_shorter_than_the_lambdas_key_cache_fails_the_system_check(settings, seconds, ok):
    settings.SIGNING_PROPAGATION_SECONDS = seconds
    errors = checks.token_settings(None)
    assert (errors == []) is ok, errors
    assert ok or [e.id for e in errors] == ["authz.E004"] and isinstance(errors[0], django_checks.Error)


# --- the unsigned authorizer's answers ------------------------------------------------------


@pytest.mark.parametrize("via", simulator.COMPACT_VIAS)
def test_a_compact_token_connects_as_its_device_with_exactly_the_device_policies(pushed, world, other, via,
                                                                                 settings):
    issued = compact_for(world.lamp)
    response, log_line = unsigned(issued, via)
    assert (log_line["reason"], log_line["credential"]) == ("ok", "compact")
    assert log_line["principal"] == f"device:{world.lamp.thing_name}"
    assert response["isAuthenticated"]
    cid = world.lamp.thing_name
    things = [d.thing_name for w in (world, other) for d in (w.lamp, w.lock)]
    names = {"client": [cid, *things, cid + "x"], "thing": things, "topic": probes(things),
             "topicfilter": probes(things)}
    connection = Connection(response["policyDocuments"], settings.IOT_REGION, settings.AWS_ACCOUNT_ID, cid)
    differences = [(action, name) for action in RESOURCE_TYPES for name in names[RESOURCE_TYPES[action]]
                   if connection.can(action, name) != expected_of_device(action, name, cid)]
    assert differences == []


def test_a_compact_token_at_the_signed_authorizer_is_refused(pushed, world):
    issued = compact_for(world.lamp)
    event = simulator.connection_event(endpoint=issued.endpoint, via="mqtt", client_id=issued.client_id,
                                       token=issued.token, mqtt_username=issued.mqtt_username)
    response, log_line, _ = simulator.invoke(event, lambda_environment())
    assert not response["isAuthenticated"] and log_line["reason"] == "wrong_authorizer"


def test_a_transferred_devices_old_compact_token_is_refused_and_the_new_owners_works(pushed, world):
    old = compact_for(world.lamp, now=timezone.now() - timedelta(seconds=5))
    old_signed = credentials.issue_device_credentials(actor=world.owner, device=world.lamp,
                                                      now=timezone.now() - timedelta(seconds=5))
    assert unsigned(old)[1]["reason"] == "ok"
    pushed(lambda: services.transfer_device(actor=world.owner, device=world.lamp, new_owner=world.bob))
    response, log_line = unsigned(old)
    assert not response["isAuthenticated"]
    # Refused for the same reason as the device's signed token of the same moment.
    signed_event = simulator.connection_event(endpoint=old_signed.endpoint, via="mqtt", client_id=old_signed.client_id,
                                              token=old_signed.token, mqtt_username=old_signed.mqtt_username)
    assert log_line["reason"] == simulator.invoke(signed_event, lambda_environment())[1]["reason"]
    assert log_line["reason"] in ("token_revoked", "principal_gone")
    with pytest.raises(credentials.PermissionDenied):
        compact_for(world.lamp, actor=world.owner)
    world.lamp.refresh_from_db()
    new = compact_for(world.lamp, actor=world.bob)
    assert unsigned(new)[1]["reason"] == "ok"


def test_the_revoke_endpoint_cuts_off_compact_tokens_issued_before_it(pushed, world, client_for,
                                                                       django_capture_on_commit_callbacks):
    before = compact_for(world.lamp, now=timezone.now() - timedelta(seconds=5))
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(world.owner).post(tenant_url("device-credentials-revoke", world, device=world.lamp.pk))
    assert response.status_code in (200, 202), response.content
    assert unsigned(before)[1]["reason"] == "token_revoked"
    after = compact_for(world.lamp)
    assert unsigned(after)[1]["reason"] == "ok"


def test_compact_tokens_of_the_retiring_key_verify_until_retire_and_are_unknown_after(pushed, world):
    clock = Clock()
    old = compact_for(world.lamp)
    rotation.stage(actor=None, now=clock.now)
    assert unsigned(old)[1]["reason"] == "ok"
    rotation.promote(actor=None, now=clock.past_propagation())
    new = compact_for(world.lamp)
    assert compact.parse(new.token).kid != compact.parse(old.token).kid
    assert new.kid == SigningKey.objects.get(state=keys.ACTIVE).compact_kid
    assert unsigned(old)[1]["reason"] == "ok"
    assert unsigned(new)[1]["reason"] == "ok"
    rotation.retire(actor=None, now=clock.past_token_lifetime())
    assert unsigned(old)[1]["reason"] == "unknown_kid"
    assert unsigned(new)[1]["reason"] == "ok"


def test_a_re_signed_token_is_refused(pushed, world):
    """Signed by a key that is not the slot's (an attacker's Ed25519 key with the same kid)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    issued = compact_for(world.lamp)
    parsed = compact.parse(issued.token)
    forged = compact.encode(parsed.claims, kid=parsed.kid, sign=Ed25519PrivateKey.generate().sign)
    forged_creds = dataclasses.replace(issued, token=forged)
    assert unsigned(forged_creds)[1]["reason"] == "bad_signature"
    assert signing_keys.active_compact_key().kid == keys.b64(parsed.kid)


def test_the_service_refuses_a_kind_it_does_not_know_and_records_nothing(pushed, world):
    with pytest.raises(ValueError, match="'tiny'"):
        credentials.issue_device_credentials(actor=world.owner, device=world.lamp, credential="tiny")
    assert not IssuedCredential.objects.exists()
