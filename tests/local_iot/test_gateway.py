"""The gateway plays AWS's side of the custom-authorizer contract against the
real lambda_bridge handler, real signing keys and tokens, and the session's
moto DynamoDB (docs/local-iot.md#the-custom-authorizer-contract)."""
import asyncio
import base64
import json
import logging
import time
from urllib.parse import quote

import pytest

from lambda_bridge.evaluator import Connection
from lambda_bridge.handler import build
from local_iot.gateway import Gateway, Presented, Refused
from tests.support import compact_device
from tests.support.compact_device import CompactKey
from tests.support.lambda_env import ACCOUNT, KEY_NAME, REGION
from tests.support.local_iot import LAMP, Signed, signed

ENDPOINT = "iot.devshare.localhost"


def gateway(env, handler=None, **options) -> Gateway:
    return Gateway(lambda_env=env, authorizer_name="devshare", token_key_name=KEY_NAME, handler=handler, **options)


def authorize(gw: Gateway, presented: Presented, connection_id: str = "c-1"):
    async def run():
        try:
            return await gw.authorize(presented, connection_id=connection_id)
        finally:
            gw.close()

    return asyncio.run(run())


def refusal(gw: Gateway, presented: Presented) -> str:
    with pytest.raises(Refused) as caught:
        authorize(gw, presented)
    return caught.value.reason


def mqtt(credentials: Signed | None = None, *, username: str | None = None, client_id="u1.7.app", password=None,
         tls=True) -> Presented:
    return Presented(protocol="mqtt", tls=tls, server_name=ENDPOINT if tls else None, client_id=client_id,
                     username=username if username is not None else credentials.username(), password=password,
                     source_ip="127.0.0.1")


def browser(query: str, *, headers=None, client_id="u1.7.app") -> Presented:
    # A browser's upgrade request: it cannot set headers of its own, and its
    # User-Agent has spaces and parentheses.
    base = {"host": ENDPOINT, "sec-websocket-protocol": "mqtt", "sec-websocket-version": "13",
            "user-agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0"}
    return Presented(protocol="ws", tls=True, server_name=ENDPOINT, client_id=client_id,
                     headers={**base, **(headers or {})}, query_string=query, source_ip="127.0.0.1")


# --- allowed, as AWS would send it ------------------------------------------------------


def test_an_mqtt_connect_with_the_parameters_in_its_username_is_granted_what_the_lambda_answered(fn, env, recording):
    credentials = signed(fn)
    sdk_username = credentials.username(extra="&SDK=Python&Version=1.31.0&Platform=Linux&Metadata=(a=b)")
    grant = authorize(gateway(env, recording), mqtt(username=sdk_username, password=b"\x00raw\xff"))

    (event,) = recording.events
    assert event["token"] == credentials.token and event["signatureVerified"] is True
    assert event["protocols"] == ["tls", "mqtt"]
    assert event["protocolData"]["tls"] == {"serverName": ENDPOINT}
    assert event["protocolData"]["mqtt"] == {"username": sdk_username, "clientId": "u1.7.app",
                                             "password": base64.b64encode(b"\x00raw\xff").decode()}
    assert event["connectionMetadata"] == {"id": "c-1"}
    assert "http" not in event["protocolData"]

    (answer,) = recording.answers
    assert grant.principal_id == answer["principalId"] == "u1x7"
    assert grant.documents == tuple(answer["policyDocuments"])
    assert (grant.refresh_in, grant.disconnect_in) == (answer["refreshAfterInSeconds"],
                                                       answer["disconnectAfterInSeconds"])
    assert (grant.region, grant.account, grant.client_id) == (REGION, ACCOUNT, "u1.7.app")
    connection = Connection(grant.documents, grant.region, grant.account, grant.client_id)
    assert connection.can("iot:Publish", f"dev/{LAMP}/in/on")


def test_a_browser_websocket_with_the_parameters_in_its_url_hands_over_the_token_it_verified(fn, env, recording):
    credentials = signed(fn)
    presented = browser(credentials.query())
    grant = authorize(gateway(env, recording), presented)

    (event,) = recording.events
    assert event["token"] == credentials.token and event["signatureVerified"] is True
    assert event["protocols"] == ["tls", "http", "mqtt"]
    assert event["protocolData"]["http"] == {"headers": dict(presented.headers),
                                             "queryString": "?" + credentials.query()}
    assert event["protocolData"]["mqtt"] == {"clientId": "u1.7.app"}
    assert grant.principal_id == "u1x7"


def test_by_default_the_real_handler_runs_built_from_the_lambda_env(fn, env, capsys):
    capsys.readouterr()
    grant = authorize(gateway(env), mqtt(signed(fn)), connection_id="c-default")
    assert grant.principal_id == "u1x7"
    # The handler's own log line, as the Lambda prints it for CloudWatch.
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [(r["event"], r["connection"], r["reason"]) for r in lines] == [("authorize", "c-default", "ok")]


def test_an_https_publish_with_the_parameters_in_headers_is_an_http_event(fn, env, recording):
    credentials = signed(fn)
    presented = Presented(protocol="http", tls=True, server_name=ENDPOINT, query_string="qos=1",
                          headers={"host": ENDPOINT, "content-type": "application/json", **credentials.headers()})
    authorize(gateway(env, recording), presented)

    (event,) = recording.events
    assert event["protocols"] == ["tls", "http"] and "mqtt" not in event["protocolData"]
    assert event["token"] == credentials.token
    assert event["protocolData"]["http"]["queryString"] == "?qos=1"


def test_over_a_websocket_the_parameters_may_ride_in_the_username_as_aws_browser_sdk_sends_them(
        fn, env, recording):
    # AWS's browser SDK (aws-iot-device-sdk-v2 for JS) leaves the URL bare and
    # builds the username itself: `?name=…&key=token&signature=…&SDK=…`.
    credentials = signed(fn)
    username = "?" + credentials.query() + "&SDK=NodeJSv2&Version=1.28.0"
    presented = Presented(protocol="ws", tls=True, server_name=ENDPOINT, client_id="u1.7.app", username=username,
                          headers=browser("").headers, query_string="")
    grant = authorize(gateway(env, recording), presented)
    (event,) = recording.events
    assert event["token"] == credentials.token and event["signatureVerified"] is True
    assert event["protocolData"]["http"]["queryString"] == ""
    assert event["protocolData"]["mqtt"]["username"] == username
    assert grant.principal_id == "u1x7"


def test_over_a_websocket_the_url_wins_over_the_username(fn, env, recording):
    good, forged = signed(fn), signed(fn, sign_with="stranger")
    presented = Presented(protocol="ws", tls=True, server_name=ENDPOINT, client_id="u1.7.app",
                          username="?" + forged.query(), query_string=good.query())
    authorize(gateway(env, recording), presented)
    assert recording.events[0]["token"] == good.token


def test_headers_win_over_the_query_string(fn, env, recording):
    good = signed(fn)
    forged = signed(fn, sign_with="stranger")
    authorize(gateway(env, recording), browser(forged.query(), headers=good.headers()))
    assert recording.events[0]["token"] == good.token


def test_a_plain_listener_sends_no_tls_and_no_server_name(fn, env, recording):
    authorize(gateway(env, recording), mqtt(signed(fn), tls=False))
    (event,) = recording.events
    assert event["protocols"] == ["mqtt"] and "tls" not in event["protocolData"]


def test_time_scale_shortens_refresh_and_disconnect(fn, env, recording):
    grant = authorize(gateway(env, recording, time_scale=0.01), mqtt(signed(fn)))
    (answer,) = recording.answers
    assert grant.refresh_in == pytest.approx(answer["refreshAfterInSeconds"] * 0.01)
    assert grant.disconnect_in == pytest.approx(answer["disconnectAfterInSeconds"] * 0.01)


# --- the unsigned authorizer -------------------------------------------------------------


def test_unsigned_the_token_rides_in_the_password_and_the_lambda_alone_verifies_it(lamp_key, env, recording):
    token = lamp_key.token()
    presented = mqtt(username=compact_device.mqtt_username(), client_id=LAMP, password=token.encode())
    grant = authorize(gateway(env, recording), presented)

    (event,) = recording.events
    assert "token" not in event and event["signatureVerified"] is False
    assert base64.b64decode(event["protocolData"]["mqtt"]["password"]).decode() == token
    assert grant.principal_id.startswith("d1x") and grant.client_id == LAMP
    assert Connection(grant.documents, grant.region, grant.account, LAMP).can("iot:Publish", f"dev/{LAMP}/out/t")


def test_unsigned_a_token_under_the_token_key_name_is_handed_over_and_a_signature_ignored(lamp_key, env, recording):
    token = lamp_key.token()
    presented = Presented(protocol="http", tls=True, server_name=ENDPOINT, query_string="qos=1",
                          headers={**compact_device.headers(token),
                                   "x-amz-customauthorizer-signature": "bm90LWNoZWNrZWQ="})
    authorize(gateway(env, recording), presented)

    (event,) = recording.events
    assert event["token"] == token and event["signatureVerified"] is False


def test_unsigned_nothing_is_checked_before_the_lambda_which_refuses_a_forged_token(lamp_key, env, recording, capsys):
    # The kid of the published key, signed by another one: only the Lambda can tell.
    forged = CompactKey().token(kid=lamp_key.kid)
    presented = mqtt(username=compact_device.mqtt_username(), client_id=LAMP, password=forged.encode())
    capsys.readouterr()
    assert refusal(gateway(env, recording), presented) == "not_authenticated"
    assert len(recording.events) == 1
    assert '"reason":"bad_signature"' in capsys.readouterr().out


def test_a_platform_token_at_the_unsigned_authorizer_is_refused_by_the_lambda(fn, env, recording, capsys):
    presented = mqtt(username=compact_device.mqtt_username(), password=fn.token().encode())
    capsys.readouterr()
    assert refusal(gateway(env, recording), presented) == "not_authenticated"
    assert '"reason":"wrong_authorizer"' in capsys.readouterr().out


def test_a_compact_token_at_the_signed_authorizer_is_refused_even_with_a_good_signature(lamp_key, fn, env, recording,
                                                                                        capsys):
    token = lamp_key.token()
    credentials = Signed(token, fn.keys["a"].sign(token), KEY_NAME)
    capsys.readouterr()
    assert refusal(gateway(env, recording), mqtt(credentials, client_id=LAMP)) == "not_authenticated"
    assert recording.events[0]["signatureVerified"] is True
    assert '"reason":"wrong_authorizer"' in capsys.readouterr().out
    # Without the RSA signature the gateway refuses it before the Lambda.
    unsigned = _username_without(credentials, "x-amz-customauthorizer-signature")
    assert refusal(gateway(env, recording), mqtt(username=unsigned, client_id=LAMP)) == "no_signature"
    assert len(recording.events) == 1


def test_the_two_authorizers_need_two_names(env):
    with pytest.raises(ValueError, match="different names"):
        Gateway(lambda_env=env, authorizer_name="same", compact_authorizer_name="same", token_key_name=KEY_NAME)


def test_the_decision_line_says_which_authorizer_and_holds_no_compact_token(lamp_key, env, recording, caplog):
    token = lamp_key.token()
    with caplog.at_level(logging.INFO, logger="local_iot.gateway"):
        authorize(gateway(env, recording), mqtt(username=compact_device.mqtt_username(), client_id=LAMP,
                                                password=token.encode()))
    (record,) = [json.loads(r.getMessage()) for r in caplog.records if r.name == "local_iot.gateway"]
    assert (record["authorizer"], record["decision"]) == ("unsigned", "allow")
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert token not in text and token[-40:] not in text


# --- refused before the Lambda runs -----------------------------------------------------


def _username_without(credentials: Signed, name: str) -> str:
    pairs = [p for p in credentials.query().split("&") if not p.startswith(name + "=")]
    return "devshare?" + "&".join(pairs)


@pytest.mark.parametrize(("username", "reason"), [
    (lambda c: c.username().replace("name=devshare", "name=someone-else"), "unknown_authorizer"),
    (lambda c: _username_without(c, "x-amz-customauthorizer-name"), "no_authorizer_name"),
    (lambda c: "devshare", "no_authorizer_name"),
    (lambda c: _username_without(c, KEY_NAME), "no_token"),
    (lambda c: _username_without(c, "x-amz-customauthorizer-signature"), "no_signature"),
    # Issue 14, 7(e): even the same value twice is refused.
    (lambda c: c.username() + f"&{KEY_NAME}={quote(c.token, safe='')}", "repeated_parameter"),
    (lambda c: c.username() + "&x-amz-customauthorizer-name=devshare", "repeated_parameter"),
    (lambda c: c.username() + "".join(f"&p{n}=x" for n in range(64)), "bad_query_string"),
], ids=["unknown name", "no name", "no query", "no token", "no signature", "token twice", "name twice",
        "too many parameters"])
def test_what_the_gateway_refuses_without_invoking(fn, env, recording, username, reason):
    assert refusal(gateway(env, recording), mqtt(username=username(signed(fn)))) == reason
    assert recording.events == []


def test_a_signature_by_a_key_not_in_the_key_item_never_reaches_the_lambda(fn, env, recording):
    assert refusal(gateway(env, recording), mqtt(signed(fn, sign_with="stranger"))) == "bad_signature"
    assert recording.events == []


def test_a_signature_sent_without_url_encoding_fails_as_on_aws(fn, env, recording):
    # Issue 14, 7(a): `+` in a query string is a space, so a base64 signature
    # with a `+` that was not URL-encoded no longer decodes.
    credentials = signed(fn)
    while "+" not in credentials.signature:
        credentials = signed(fn)
    presented = browser(credentials.query(encode_signature=False))
    assert refusal(gateway(env, recording), presented) == "bad_signature"
    assert recording.events == []


def test_a_key_staged_in_the_key_item_verifies_once_the_short_cache_has_passed(fn, env, recording):
    gw = gateway(env, recording)
    with_b = signed(fn, key="b")

    async def run():
        try:
            with pytest.raises(Refused) as caught:
                await gw.authorize(mqtt(with_b), connection_id="c-1")
            assert caught.value.reason == "bad_signature"
            fn.put_keyring(a="active", b="staged", version=2)
            deadline = time.monotonic() + 10
            while True:
                try:
                    return await gw.authorize(mqtt(with_b), connection_id="c-2")
                except Refused as refused:
                    if refused.reason != "bad_signature" or time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.1)
        finally:
            gw.close()

    assert asyncio.run(run()).principal_id == "u1x7"


def test_no_key_item_means_no_connection(cold_start, env, recording):
    fn = cold_start()  # no key item written
    assert refusal(gateway(env, recording), mqtt(signed(fn))) == "keys_unavailable"
    assert recording.events == []


# --- the Lambda's answer ----------------------------------------------------------------


def test_a_lambda_refusal_is_a_refusal(fn, env, recording):
    credentials = signed(fn, cid="u1.7.other")
    assert refusal(gateway(env, recording), mqtt(credentials)) == "not_authenticated"
    assert recording.answers[0]["isAuthenticated"] is False


def _allowed(**changes) -> dict:
    document = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "iot:Connect", "Resource": "arn:aws:iot:eu-west-1:123456789012:client/x"}]})
    answer = {"isAuthenticated": True, "principalId": "abc", "refreshAfterInSeconds": 300,
              "disconnectAfterInSeconds": 600, "policyDocuments": [document]}
    answer.update(changes)
    return answer


CONDITION = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "iot:Connect", "Resource": "*", "Condition": {"Bool": {"a": "true"}}}]})


@pytest.mark.parametrize("answer", [
    "not an object",
    _allowed(isAuthenticated="true"),
    _allowed(principalId="u1-x7"),
    _allowed(principalId=""),
    _allowed(principalId="a" * 129),
    _allowed(policyDocuments=[_allowed()["policyDocuments"][0]] * 11),
    _allowed(policyDocuments=["{" + " " * 2048 + "}"]),
    _allowed(policyDocuments=[json.loads(_allowed()["policyDocuments"][0])]),
    _allowed(policyDocuments=["not json"]),
    _allowed(policyDocuments=[CONDITION]),
    _allowed(policyDocuments="[]"),
    _allowed(refreshAfterInSeconds=299),
    _allowed(refreshAfterInSeconds=300.0),
    _allowed(refreshAfterInSeconds=True),
    _allowed(disconnectAfterInSeconds=86_401),
    _allowed(disconnectAfterInSeconds=None),
], ids=["not a dict", "isAuthenticated string", "principal dash", "principal empty", "principal 129",
        "11 documents", "2049 characters", "document object", "not json", "condition", "documents string",
        "refresh 299", "refresh float", "refresh bool", "disconnect 86401", "disconnect missing"])
def test_an_answer_outside_the_contract_is_refused(fn, env, answer):
    assert refusal(gateway(env, lambda event, context: answer), mqtt(signed(fn))) == "bad_response"


def test_an_answer_at_the_contracts_edges_is_accepted(fn, env):
    document = _allowed()["policyDocuments"][0]
    edge = _allowed(principalId="A" * 128, refreshAfterInSeconds=300, disconnectAfterInSeconds=86_400,
                    policyDocuments=[document + " " * (2048 - len(document))] * 10)
    grant = authorize(gateway(env, lambda event, context: edge), mqtt(signed(fn)))
    assert (grant.principal_id, len(grant.documents), grant.disconnect_in) == ("A" * 128, 10, 86_400)


def test_a_lambda_that_raises_is_a_failed_invocation(fn, env):
    def broken(event, context):
        raise RuntimeError("boom")

    assert refusal(gateway(env, broken), mqtt(signed(fn))) == "invoke_failed"


def test_a_lambda_slower_than_the_timeout_is_refused(fn, env):
    import threading

    release = threading.Event()

    def stuck(event, context):
        release.wait(10)
        return _allowed()

    try:
        assert refusal(gateway(env, stuck, invoke_timeout=0.2), mqtt(signed(fn))) == "invoke_timeout"
    finally:
        release.set()


def test_the_lambda_is_invoked_one_call_at_a_time(fn, env):
    import threading

    running, most = [0], [0]
    guard = threading.Lock()
    real = build(env)

    def counting(event, context):
        with guard:
            running[0] += 1
            most[0] = max(most[0], running[0])
        try:
            time.sleep(0.02)  # long enough for the others to pile up if they could
            return real(event, context)
        finally:
            with guard:
                running[0] -= 1

    gw = gateway(env, counting)
    credentials = [signed(fn) for _ in range(6)]

    async def run():
        try:
            return await asyncio.gather(*(gw.authorize(mqtt(c), connection_id=f"c-{n}")
                                          for n, c in enumerate(credentials)))
        finally:
            gw.close()

    grants = asyncio.run(run())
    assert [g.principal_id for g in grants] == ["u1x7"] * 6
    assert most[0] == 1


# --- the log ----------------------------------------------------------------------------


def test_each_decision_is_one_json_log_line_without_credentials(fn, env, recording, caplog):
    caplog.set_level(logging.INFO, logger="local_iot.gateway")
    good, forged = signed(fn), signed(fn, sign_with="stranger")
    authorize(gateway(env, recording), mqtt(good), connection_id="c-ok")
    with pytest.raises(Refused):
        authorize(gateway(env, recording), mqtt(forged), connection_id="c-forged")

    records = [json.loads(r.getMessage()) for r in caplog.records if r.name == "local_iot.gateway"]
    assert [(r["connection"], r["decision"], r["reason"]) for r in records] == [
        ("c-ok", "allow", "ok"), ("c-forged", "deny", "bad_signature")]
    assert records[0]["principal"] == "u1x7" and records[0]["client_id"] == "u1.7.app"
    text = "\n".join(r.getMessage() for r in caplog.records)
    for secret in (good.token, good.signature, forged.signature, quote(good.signature, safe=""),
                   good.token.rsplit(".", 1)[-1]):
        assert secret not in text


def test_lambda_settings_that_do_not_parse_refuse_every_connection(fn, env, capsys):
    broken = {**env, "DEVSHARE_AWS_ACCOUNT_ID": "not-an-account"}
    assert refusal(gateway(broken), mqtt(signed(fn))) == "keys_unavailable"
    # Unsigned, the Lambda itself is asked, and it refuses as misconfigured.
    unsigned = mqtt(username=compact_device.mqtt_username(), client_id=LAMP, password=CompactKey().token().encode())
    assert refusal(gateway(broken), unsigned) == "not_authenticated"
    assert '"reason":"misconfigured"' in capsys.readouterr().out
