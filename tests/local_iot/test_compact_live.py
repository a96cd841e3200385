"""Compact device tokens live (issue 17's acceptance, docs/local-iot.md#two-authorizers):
local_iot running the real handler on the session's moto table, with the key
item (a compact half in slot A) and the snapshots written directly, and real
clients: `curl` publishing over HTTPS with the token in a header or the
query string, paho-mqtt 3.1.1 and 5 with the token as the MQTT password.

The verdict is what a client observes (an HTTP status, a CONNACK, a SUBACK
or PUBACK code, the messages that arrive); the Lambda's reason is read from
its own log line, which local_iot prints as the Lambda would."""
import base64
import json
import logging
import ssl
from dataclasses import replace
from urllib.parse import quote

import pytest

from lambda_bridge import compact
from tests.support import compact_device
from tests.support.compact_device import CompactKey
from tests.support.lambda_env import KEY_NAME
from tests.support.local_iot import LAMP, RunningLocalIot, Signed, lambda_reasons, signed
from tests.support.mqtt_client import Client, over

LOCK = "d-lock00000001"  # another device of tenant 1, with a snapshot of its own
APP = "u1.7.app"  # user 7's app, which controls the lamp (tests/local_iot/conftest.py)
SUBACK_REFUSED = {4: 0x80, 5: 0x87}
PUBACK_REFUSED_5 = 0x87


@pytest.fixture
def iot(lamp_key, fn, env, tmp_path):
    compact_device.device_snapshot(fn, LOCK)
    with RunningLocalIot(env, cert_dir=tmp_path / "certs") as running:
        yield running


@pytest.fixture
def clients():
    made = []
    yield made
    for one in made:
        one.close()


@pytest.fixture
def device(iot, clients):
    """device(token, version=5, client_id=LAMP, authorizer=…) → an unconnected paho Client
    over TLS with ALPN mqtt (AWS's port 443), the token as its password."""

    def make(token: str, *, version: int = 5, client_id: str = LAMP,
             authorizer: str = compact_device.COMPACT_AUTHORIZER) -> Client:
        context = ssl.create_default_context(cafile=iot.ca_file)
        context.set_alpn_protocols(["mqtt"])
        username = compact_device.mqtt_username(authorizer)
        clients.append(Client(iot.tls_port, client_id, token.encode(), username=username, version=version,
                              host="localhost", tls_context=context, keepalive=30))
        return clients[-1]

    return make


@pytest.fixture
def app(iot, fn, clients) -> Client:
    """User 7's app, with a platform token at the signed authorizer, connected."""
    clients.append(over(iot, "tls", client_id=APP, version=5, username=signed(fn).username()))
    assert clients[-1].connect()
    return clients[-1]


def curl_publish(iot, topic: str, payload: str, *, headers: dict[str, str] | None = None, query: str = "") -> int:
    """HTTPS publish with the real curl: the authorizer's parameters in headers, or in the URL."""
    url = f"https://localhost:{iot.tls_port}/topics/{quote(topic, safe='')}?qos=1" + (f"&{query}" if query else "")
    return compact_device.curl_publish(url, payload, ca_file=iot.ca_file, headers=headers)


# --- HTTPS publish ----------------------------------------------------------------------


@pytest.mark.parametrize("place", ["header", "query"])
def test_curl_publishes_as_the_device_with_the_compact_token(iot, lamp_key, app, place):
    token = lamp_key.token()
    where = {"headers": compact_device.headers(token)} if place == "header" else {"query": compact_device.query(token)}
    assert app.subscribe(f"dev/{LAMP}/out/#") == [1]

    # Inside the device's policy: its own out topics. Outside: its in topics
    # (apps publish there) and another device's out topics.
    assert curl_publish(iot, f"dev/{LAMP}/in/on", "not mine to send", **where) == 403
    assert curl_publish(iot, f"dev/{LOCK}/out/telemetry", "not my topic", **where) == 403
    assert curl_publish(iot, f"dev/{LAMP}/out/telemetry", '{"t":21.5}', **where) == 200

    # The refused ones were sent first: the app sees exactly the allowed one.
    assert app.received() == [(f"dev/{LAMP}/out/telemetry", b'{"t":21.5}')]
    assert app.nothing_received()


def test_curl_with_a_bad_compact_token_is_unauthorized_and_publishes_nothing(iot, lamp_key, app, capsys):
    assert app.subscribe(f"dev/{LAMP}/out/#") == [1]
    capsys.readouterr()
    stranger = CompactKey().token()
    assert curl_publish(iot, f"dev/{LAMP}/out/t", "forged", headers=compact_device.headers(stranger)) == 401
    assert curl_publish(iot, f"dev/{LAMP}/out/t", "fine", headers=compact_device.headers(lamp_key.token())) == 200
    assert app.received() == [(f"dev/{LAMP}/out/t", b"fine")]
    assert lambda_reasons(capsys) == ["unknown_kid", "ok"]


# --- MQTT -------------------------------------------------------------------------------


def test_paho_connects_with_the_token_as_password_and_acts_inside_the_devices_policy(lamp_key, device, app,
                                                                                     version):
    lamp = device(lamp_key.token(), version=version)
    assert lamp.connect()
    assert app.subscribe(f"dev/{LAMP}/out/#") == [1]

    # Inside: it hears its commands and publishes its telemetry.
    assert lamp.subscribe(f"dev/{LAMP}/in/#") == [1]
    assert app.publish(f"dev/{LAMP}/in/on", b"{}") == 0
    assert lamp.received() == [(f"dev/{LAMP}/in/on", b"{}")]
    assert lamp.publish(f"dev/{LAMP}/out/telemetry", b"21.5") in (0, None)
    assert app.received() == [(f"dev/{LAMP}/out/telemetry", b"21.5")]

    # Outside: another device's commands, another device's topics.
    assert lamp.subscribe(f"dev/{LOCK}/in/#") == [SUBACK_REFUSED[version]]
    refused = lamp.publish(f"dev/{LOCK}/out/telemetry", b"not mine")
    if version == 5:
        assert refused == PUBACK_REFUSED_5
    else:
        # MQTT 3.1.1 has no negative PUBACK: AWS closes the connection.
        assert refused is None and lamp.disconnected.is_set()
    assert app.nothing_received()


def test_the_token_admits_only_the_thing_it_names_as_client_id(lamp_key, device, capsys):
    capsys.readouterr()
    assert not device(lamp_key.token(), client_id=LOCK).connect()
    assert lambda_reasons(capsys) == ["client_id_mismatch"]


def _forged(key: CompactKey, **edits) -> str:
    """A token of the lamp with its claims edited and its signature kept."""
    parsed = compact.parse(key.token())
    return compact.encode(replace(parsed.claims, **edits), kid=parsed.kid, sign=lambda _: parsed.signature)


@pytest.mark.parametrize(("make", "reason"), [
    (lambda key: _forged(key, thing=LOCK), "bad_signature"),
    (lambda key: _forged(key, expires=compact.parse(key.token()).claims.expires + 86_400), "bad_signature"),
    (lambda key: CompactKey().token(kid=key.kid), "bad_signature"),
    (lambda key: CompactKey().token(), "unknown_kid"),
], ids=["thing edited", "expiry edited", "re-signed under the published kid", "re-signed under its own kid"])
def test_a_forged_or_re_signed_token_is_refused_at_connect(lamp_key, device, capsys, make, reason):
    token = make(lamp_key)
    thing = compact.parse(token).claims.thing
    capsys.readouterr()
    assert not device(token, client_id=thing).connect()
    assert lambda_reasons(capsys) == [reason]


def test_each_kind_of_token_is_refused_at_the_other_authorizer(fn, lamp_key, device, iot, clients, capsys):
    capsys.readouterr()
    # A platform JWT (user 7's) as the password at the unsigned authorizer.
    assert not device(fn.token(), client_id=APP).connect()
    # A compact token at the signed authorizer, with a valid RSA signature of it
    # so that AWS's own check passes and the Lambda is asked.
    token = lamp_key.token()
    at_signed = Signed(token, fn.keys["a"].sign(token), KEY_NAME)
    clients.append(over(iot, "tls", client_id=LAMP, version=5, username=at_signed.username()))
    assert not clients[-1].connect()
    assert lambda_reasons(capsys) == ["wrong_authorizer", "wrong_authorizer"]
    # Named by neither authorizer's name: the gateway refuses before the Lambda.
    assert not device(token, authorizer="devshare-other").connect()
    assert lambda_reasons(capsys) == []


def test_a_tombstoned_device_is_refused_its_old_token(fn, lamp_key, device, iot):
    """The Lambda's tombstone rule, live; the transfer itself, through
    Django, is tests/authz/test_compact_live.py."""
    token = lamp_key.token()
    first = device(token)
    assert first.connect()
    first.disconnect()

    # The transfer tombstones the device's snapshot in its old tenant.
    compact_device.device_snapshot(fn, gone=True)

    assert not device(token).connect()
    assert curl_publish(iot, f"dev/{LAMP}/out/t", "late", headers=compact_device.headers(token)) == 401


def test_the_gateway_log_never_holds_the_token_or_the_password(lamp_key, device, iot, caplog):
    token = lamp_key.token()
    with caplog.at_level(logging.INFO, logger="local_iot.gateway"):
        assert device(token).connect()
        assert curl_publish(iot, f"dev/{LAMP}/out/t", "x", headers=compact_device.headers(token)) == 200
        assert curl_publish(iot, f"dev/{LAMP}/out/t", "x", query=compact_device.query(token)) == 200
        assert not device(CompactKey().token()).connect()

    lines = [record.getMessage() for record in caplog.records if record.name == "local_iot.gateway"]
    decisions = [json.loads(line) for line in lines]
    assert [(d["authorizer"], d["decision"]) for d in decisions] == [("unsigned", "allow")] * 3 + [
        ("unsigned", "deny")]
    text = "\n".join(record.getMessage() for record in caplog.records)
    password = base64.b64encode(token.encode()).decode()
    for secret in (token, token[-86:], password, quote(token, safe="")):
        assert secret not in text

