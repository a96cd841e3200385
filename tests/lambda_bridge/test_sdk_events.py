"""Events in the shape AWS IoT sends a signed authorizer, with the usernames,
URLs and headers real clients build (issue 14, item 7c): the AWS IoT Device
SDK for Python (awsiotsdk 1.31.0, captured from its CONNECT packet), the JS
SDK's browser MQTT 5 client, MQTT.js opening `wssUrl` in Chromium, and curl's
HTTPS publish. docs/authorizer.md#canned-events lists them."""
import base64
import json
from urllib.parse import parse_qs, quote

import jwt
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from lambda_bridge import snapshot
from lambda_bridge.evaluator import Connection
from lambda_bridge.snapshot import Entry
from tests.support.lambda_env import ACCOUNT, KEY_NAME, REGION

LAMP, LOCK = "d-lamp00000001", "d-lock00000001"
SIGNATURE = "x-amz-customauthorizer-signature"
APP, DEVICE = "u1.7.app", LAMP
# event → (who connects, where the handler reads the token when AWS has not extracted it)
SIGNED = {
    "signed_sdk_python_mqtt5": (DEVICE, "mqtt_username"),
    "signed_sdk_python_mqtt5_given_username": (DEVICE, "mqtt_username"),
    "signed_sdk_js_browser_mqtt5": (APP, "mqtt_username"),
    "signed_browser_wss_query": (APP, "query_string"),
    "signed_https_publish": (DEVICE, "http_header"),
}


@pytest.fixture(autouse=True)
def home(lam):
    """User 7 controls the lamp and views the lock; the lamp is a device too."""
    lam.put_snapshot(principal="7", entries=[Entry(LAMP, snapshot.CONTROL), Entry(LOCK, snapshot.VIEW)])
    lam.put_snapshot(principal="8", entries=[Entry(LOCK, snapshot.OWNER)])
    lam.put_snapshot(kind=snapshot.DEVICE, principal=LAMP, entries=[Entry(LAMP, snapshot.OWNER)])


def token_for(lam, who: str) -> str:
    return lam.token(sub=f"device:{LAMP}") if who == DEVICE else lam.token()


def carried(event: dict) -> dict[str, list[str]]:
    """Every custom-authorizer parameter the client sent, decoded as AWS reads
    it: the MQTT username's query, the URL's query string, the headers."""
    data = event["protocolData"]
    found: dict[str, list[str]] = {}
    username = data.get("mqtt", {}).get("username", "")
    http = data.get("http", {})
    for query in (username.partition("?")[2], http.get("queryString", "").removeprefix("?")):
        for name, values in parse_qs(query).items():
            found.setdefault(name, []).extend(values)
    for name, value in http.get("headers", {}).items():
        found.setdefault(name.lower(), []).append(value)
    return found


def verifies(lam, token: str, signature: str) -> bool:
    try:
        lam.keys["a"].private.public_key().verify(base64.b64decode(signature, validate=True), token.encode(),
                                                  padding.PKCS1v15(), hashes.SHA256())
    except Exception:  # noqa: BLE001 (any failure is "does not verify")
        return False
    return True


@pytest.mark.parametrize("name", SIGNED)
def test_each_event_carries_a_signature_aws_would_verify(lam, name):
    """signatureVerified: true is only honest if the gateway could verify what
    the client sent, decoded the way a query string or a header is."""
    who, _ = SIGNED[name]
    token = token_for(lam, who)
    event = lam.event(name, token, client_id=who)
    params = carried(event)

    assert params[KEY_NAME] == [token]
    assert params["x-amz-customauthorizer-name"] == ["devshare"]
    assert len(params[SIGNATURE]) == 1 and verifies(lam, token, params[SIGNATURE][0])
    assert event["token"] == token and event["signatureVerified"] is True


@pytest.mark.parametrize("name", SIGNED)
def test_each_signed_event_is_allowed_as_its_principal_only(lam, name):
    who, _ = SIGNED[name]
    response = lam.invoke(lam.event(name, token_for(lam, who), client_id=who))
    can = Connection(response["policyDocuments"], REGION, ACCOUNT, who).can

    assert response["isAuthenticated"] is True, lam.last_log
    assert lam.last_log["source"] == "token"
    assert can("iot:Connect", who)
    if who == DEVICE:
        assert lam.last_log["principal"] == f"device:{LAMP}"
        assert can("iot:Publish", f"dev/{LAMP}/out/telemetry")
        assert not can("iot:Publish", f"dev/{LOCK}/out/telemetry")
    else:
        assert lam.last_log["principal"] == "user:7"
        assert can("iot:Publish", f"dev/{LAMP}/in/power")
        assert not can("iot:Publish", f"dev/{LOCK}/in/unlock")  # user 8 owns it; user 7 only views it


@pytest.mark.parametrize("name", SIGNED)
def test_the_token_is_found_among_the_sdk_metrics_when_aws_has_not_extracted_it(lam, name):
    """Without the `token` field the handler reads the client's own fields,
    past SDK=…&Platform=…&Metadata=(…;…) and a browser's headers."""
    who, source = SIGNED[name]
    event = _not_extracted(lam.event(name, token_for(lam, who), client_id=who))

    assert lam.invoke(event)["isAuthenticated"] is True
    assert lam.last_log["source"] == source


def _forged(lam) -> str:
    """User 8's claims under a signature made for user 7's token."""
    header, _, signature = lam.token(sub="user:7").split(".")
    _, payload, _ = lam.token(sub="user:8", cid="u1.7.app").split(".")
    return f"{header}.{payload}.{signature}"


@pytest.mark.parametrize("name", SIGNED)
def test_a_tampered_token_is_refused(lam, name):
    who, _ = SIGNED[name]
    good = token_for(lam, who)
    forged = _forged(lam)
    # Swapped everywhere the client put it, as a tampering client would.
    event = json.loads(json.dumps(lam.event(name, good, client_id=who)).replace(good, forged)
                       .replace(quote(good, safe=""), quote(forged, safe="")))

    assert lam.invoke(event)["isAuthenticated"] is False
    assert lam.last_log["reason"] == "bad_signature"


@pytest.mark.parametrize("name", [n for n, (_, source) in SIGNED.items() if source != "http_header"])
def test_another_client_id_is_refused(lam, name):
    who, _ = SIGNED[name]
    event = lam.event(name, token_for(lam, who), client_id=who)
    event["protocolData"]["mqtt"]["clientId"] = f"{who}-2"

    assert lam.invoke(event)["isAuthenticated"] is False
    assert lam.last_log["reason"] == "client_id_mismatch"


# --- a parameter given twice (issue 14, item 7e; docs/decisions/0006) -------------------


def _not_extracted(event: dict) -> dict:
    """The event as if AWS had passed the client's fields on without taking
    the token out of them; still the signed authorizer's, since a JWT goes
    nowhere else (docs/authorizer.md#two-authorizers)."""
    del event["token"]
    return event


def test_an_sdk_given_mqtt_username_and_the_four_fields_too_is_allowed(lam):
    """What awsiotsdk builds from username=mqttUsername plus the four fields:
    every parameter twice, with the same values."""
    token = token_for(lam, DEVICE)
    event = _not_extracted(lam.event("signed_sdk_python_mqtt5_given_username", token, client_id=DEVICE))
    mqtt = event["protocolData"]["mqtt"]
    base, _, metrics = mqtt["username"].partition("&SDK=")
    signature = quote(lam.keys["a"].sign(token))
    mqtt["username"] = (f"{base}&x-amz-customauthorizer-name=devshare&{SIGNATURE}={signature}"
                        f"&{KEY_NAME}={token}&SDK={metrics}")
    assert parse_qs(mqtt["username"].partition("?")[2])[KEY_NAME] == [token, token]

    assert lam.invoke(event)["isAuthenticated"] is True
    assert lam.last_log["source"] == "mqtt_username"


@pytest.mark.parametrize("name, place", [
    ("signed_sdk_python_mqtt5", "username"), ("signed_browser_wss_query", "query"),
    ("signed_https_publish", "header"),
])
def test_the_same_token_twice_is_one_token_and_two_tokens_are_refused(lam, name, place):
    who, _ = SIGNED[name]
    token, other = token_for(lam, who), token_for(lam, who)

    def twice(second: str) -> dict:
        event = _not_extracted(lam.event(name, token, client_id=who))
        data = event["protocolData"]
        if place == "username":
            data["mqtt"]["username"] += f"&{KEY_NAME}={second}"
        elif place == "query":
            data["http"]["queryString"] += f"&{KEY_NAME}={second}"
        else:
            data["http"]["headers"][KEY_NAME.upper()] = second
        return event

    assert lam.invoke(twice(token))["isAuthenticated"] is True
    assert lam.invoke(twice(other))["isAuthenticated"] is False
    assert lam.last_log["reason"] == "bad_event"


def test_the_forged_token_differs_from_the_good_one_only_in_its_claims(lam):
    """Guards the tampering case: the forged token keeps a real signature."""
    forged = _forged(lam)
    assert jwt.get_unverified_header(forged)["kid"] == lam.keys["a"].kid
    assert jwt.decode(forged, options={"verify_signature": False})["sub"] == "user:8"
