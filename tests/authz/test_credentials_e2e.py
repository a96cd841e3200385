"""From the API to the authorizer: credentials an app or a device gets, put
into the events AWS IoT sends for a browser WebSocket and for MQTT, answered
by the cold-started Lambda handler against the table the platform writes:
the key item from the rotation, the snapshots from the outbox."""
import json
import re
import time
from base64 import b64encode
from urllib.parse import quote, urlsplit

import jwt
import pytest
from django.conf import settings

from authz.snapshots import outbox
from authz.tokens import credentials, rotation, signing_keys
from devices import services
from devices.models import Level, Tenant
from devices.selectors import effective_access
from lambda_bridge.evaluator import RESOURCE_TYPES, Connection
from tests.authz.signing_helpers import Clock
from tests.lambda_bridge.spec import expected, expected_of_device, probes
from tests.support.api import tenant_url
from tests.support.lambda_env import ACCOUNT, EVENTS, REGION

pytestmark = pytest.mark.django_db

ACTIONS = tuple(RESOURCE_TYPES)


def aws_event(name: str, creds: dict) -> dict:
    """A canned event (tests/lambda_bridge/events/) carrying these credentials
    the way the gateway passes them on: from the signed authorizer, which has
    checked the signature, for a signed credential; from the unsigned one for
    a compact token (docs/credentials.md#compact-device-tokens)."""
    signed = creds.get("credential", "signed") == "signed"
    values = {
        "token": creds["token"],
        "token_base64": b64encode(creds["token"].encode()).decode(),
        "token_urlencoded": quote(creds["token"], safe=""),
        "signature": creds.get("tokenSignature", ""),
        "signature_urlencoded": quote(creds.get("tokenSignature", ""), safe=""),
        "client_id": creds["clientId"],
        "key_name": creds["tokenKeyName"],
    }
    event = json.loads(re.sub(r"\{\{(\w+)\}\}", lambda m: values[m.group(1)], (EVENTS / f"{name}.json").read_text()))
    event["signatureVerified"] = signed
    return event


def browser_event(creds: dict) -> dict:
    """What the gateway sends for the wssUrl, opened as it is."""
    event = aws_event("websocket_query", creds)
    event["protocolData"]["http"]["queryString"] = "?" + urlsplit(creds["wssUrl"]).query
    return event


def mqtt_event(creds: dict) -> dict:
    """What the gateway sends for an MQTT CONNECT with mqttUsername as the username."""
    event = aws_event("mqtt_username", creds)
    event["protocolData"]["mqtt"]["username"] = creds["mqttUsername"]
    return event


@pytest.fixture
def platform(world, other, table, cold_start, client_for, django_capture_on_commit_callbacks):
    """Keys rotated in and every snapshot pushed to the Lambda's table."""
    rotation.rotate(actor=None)

    # Inside the capture: a push queued after commit joins the callback that is pending.
    with django_capture_on_commit_callbacks(execute=True):
        services.create_share(actor=world.owner, grantee=world.alice, device=world.lock, level=Level.VIEW)
        services.create_share(actor=world.owner, grantee=world.alice, group=world.group, level=Level.CONTROL)
        outbox.record_everyone(tenants=Tenant.objects.all())

    class Platform:
        lam = cold_start()

        @staticmethod
        def credentials(user, body=None, device=None) -> dict:
            path = (tenant_url("iot-credentials", world) if device is None
                    else tenant_url("device-credentials", world, device=device.pk))
            response = client_for(user).post(path, body or {}, format="json")
            assert response.status_code == 201, response.content
            return response.json()

    return Platform


def judge(response: dict, cid: str, expect, world, other) -> None:
    """Every action on every probe topic of both tenants' things, as the
    broker would judge it with these policies, against the rules."""
    assert response["isAuthenticated"]
    things = [d.thing_name for w in (world, other) for d in (w.lamp, w.lock)]
    names = {"client": [cid, *things, f"u{world.tenant.pk}.{world.owner.pk}.app", cid + "x"], "thing": things,
             "topic": probes(things), "topicfilter": probes(things)}
    connection = Connection(response["policyDocuments"], REGION, ACCOUNT, cid)
    differences = [(action, name) for action in ACTIONS for name in names[RESOURCE_TYPES[action]]
                   if connection.can(action, name) != expect(action, name, cid)]
    assert differences == []


def levels_of(user, world) -> dict[str, int]:
    found = {}
    for device in (world.lamp, world.lock):
        access = effective_access(user=user, device=device)
        if access is not None:
            found[device.thing_name] = access.level
    return found


@pytest.mark.parametrize("build", [browser_event, mqtt_event], ids=["browser-websocket", "mqtt-username"])
def test_app_credentials_authorize_exactly_the_users_devices(platform, world, other, build):
    creds = platform.credentials(world.alice)
    response = platform.lam.invoke(build(creds))
    assert platform.lam.last_log["reason"] == "ok"
    assert platform.lam.last_log["principal"] == f"user:{world.alice.pk}"
    levels = levels_of(world.alice, world)
    assert levels == {world.lock.thing_name: Level.VIEW, world.lamp.thing_name: Level.CONTROL}
    judge(response, creds["clientId"], lambda action, name, cid: expected(action, name, levels, cid), world, other)


def test_the_token_in_the_mqtt_password_works_too(platform, world, other):
    creds = platform.credentials(world.alice)
    response = platform.lam.invoke(aws_event("mqtt_password", creds))
    assert platform.lam.last_log["source"] == "mqtt_password"
    levels = levels_of(world.alice, world)
    judge(response, creds["clientId"], lambda action, name, cid: expected(action, name, levels, cid), world, other)


def test_a_scoped_token_reaches_only_its_scope(platform, world, other):
    creds = platform.credentials(world.alice, {"scope": {"devices": [world.lock.pk]}})
    response = platform.lam.invoke(browser_event(creds))
    levels = {world.lock.thing_name: Level.VIEW}
    judge(response, creds["clientId"], lambda action, name, cid: expected(action, name, levels, cid), world, other)


def test_device_credentials_connect_as_the_thing(platform, world, other):
    creds = platform.credentials(world.owner, device=world.lamp)
    response = platform.lam.invoke(mqtt_event(creds))
    assert platform.lam.last_log["principal"] == f"device:{world.lamp.thing_name}"
    judge(response, world.lamp.thing_name, lambda action, name, cid: expected_of_device(action, name, cid),
          world, other)


def test_another_client_id_than_the_tokens_is_refused(platform, world):
    creds = platform.credentials(world.alice)
    event = mqtt_event(creds)
    event["protocolData"]["mqtt"]["clientId"] = world.lamp.thing_name  # knocking the lamp offline
    response = platform.lam.invoke(event)
    assert not response["isAuthenticated"] and platform.lam.last_log["reason"] == "client_id_mismatch"


def test_the_fit_check_agrees_with_the_authorizer_at_the_boundary(platform, world, other, table,
                                                                  django_capture_on_commit_callbacks):
    """The API's 409 is exactly the authorizer's scope_required: one device
    before the refusal, both say yes; at it, both say no."""
    verdicts = []
    for _ in range(40):
        with django_capture_on_commit_callbacks(execute=True):
            services.register_device(actor=world.bob, tenant=world.tenant, name="Sensor",
                                     device_type=world.type)
        try:
            api = credentials.issue_user_credentials(actor=world.bob, tenant=world.tenant)
        except credentials.ScopeRequired:
            # What the authorizer says to the same grants, unscoped.
            key = signing_keys.active_signing_key()
            token = _unchecked_token(key, world)
            platform.lam.invoke(platform.lam.event("test_invoke", token))
            verdicts.append(("409", platform.lam.last_log["reason"]))
            break
        platform.lam.invoke(platform.lam.event("test_invoke", api.token))
        verdicts.append(("201", platform.lam.last_log["reason"]))
    assert verdicts[-1] == ("409", "scope_required"), verdicts
    assert set(verdicts[:-1]) == {("201", "ok")} and len(verdicts) > 10


def _unchecked_token(key, world) -> str:
    """Bob's unscoped token, minted the way the service does but without its fit check."""
    now = int(time.time())
    claims = {"iss": settings.IOT_TOKEN_ISSUER, "aud": settings.IOT_TOKEN_AUDIENCE, "sub": f"user:{world.bob.pk}",
              "tid": world.tenant.pk, "cid": f"u{world.tenant.pk}.{world.bob.pk}.probe", "iat": now, "nbf": now,
              "exp": now + 3600, "jti": "probe"}
    return jwt.encode(claims, key.private_key, algorithm="RS256", headers={"kid": key.kid})


def test_issued_tokens_outlive_a_rotation_and_new_ones_carry_the_new_kid(platform, world, cold_start):
    clock = Clock()
    before = platform.credentials(world.alice)
    old_kid = signing_keys.active_signing_key().kid

    def answer(creds) -> str:
        lam = cold_start()  # a new Lambda instance: it reads the key item afresh
        lam.invoke(mqtt_event(creds))
        return lam.last_log["reason"]

    rotation.stage(actor=None, now=clock.now)
    assert answer(before) == "ok"
    rotation.promote(actor=None, now=clock.past_propagation())
    assert answer(before) == "ok"
    after = platform.credentials(world.alice)
    new_kid = signing_keys.active_signing_key().kid
    assert new_kid != old_kid
    assert jwt.get_unverified_header(after["token"])["kid"] == new_kid
    assert answer(after) == "ok"
    rotation.retire(actor=None, now=clock.past_token_lifetime())
    assert answer(before) == "unknown_kid"
    assert answer(after) == "ok"
