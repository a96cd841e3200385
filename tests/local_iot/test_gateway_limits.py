"""The gateway's, the data plane's and the shadow service's limits
(docs/local-iot.md#the-custom-authorizer-contract, #the-data-plane,
#device-shadows): one invocation at a time within the 5 s limit and a
bounded queue; SigV4 only under the local access key id, and never instead
of the authorizer; the broker's topic rules for HTTPS publish; shadow
requests that cannot exhaust the stack or memory.

The parts are real: the gateway invokes the real authorizer handler on the
session's moto table with real tokens; the data plane runs in front of the
real broker (tests/support/broker_server.py), and what it published is what
a client watching every topic received (`published`); boto3 talks to a whole
local_iot on its own HTTP listener.
"""
import asyncio
import json
import logging
import threading
import time
from urllib.parse import quote, unquote

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from lambda_bridge.handler import build
from local_iot import limits
from local_iot.__main__ import parser
from local_iot.gateway import Gateway, Grant, Presented, Reason, Refused
from local_iot.http import Request
from local_iot.shadow import MAX_SHADOWS_PER_THING, Shadows
from tests.support.broker_server import FROZEN_NOW as T
from tests.support.broker_server import Published, published
from tests.support.compact_device import COMPACT_AUTHORIZER
from tests.support.lambda_env import KEY_NAME
from tests.support.local_iot import LAMP, RecordingHandler, RunningLocalIot, signed
from tests.support.policy_gateway import ACCOUNT, REGION, document

APP = "u1.7.app"  # the client id of user 7's tokens (tests/support/authorizer.py)


def sigv4(key_id: str) -> str:
    return (f"AWS4-HMAC-SHA256 Credential={key_id}/20261201/eu-west-1/iotdata/aws4_request, "
            "SignedHeaders=host;x-amz-date, Signature=" + "ab" * 32)


# --- the invocation ---------------------------------------------------------------------


class HoldsOneToken:
    """The real handler, except that the call for `token` waits until
    `release` is set, as a Lambda stuck on a slow read would."""

    def __init__(self, handler, token: str):
        self.handler, self.token = handler, token
        self.entered, self.release = threading.Event(), threading.Event()

    def __call__(self, event, context):
        if event.get("token") == self.token:
            self.entered.set()
            self.release.wait(30)
        return self.handler(event, context)


def unsigned_gateway(env, handler, **options) -> Gateway:
    # At the unsigned authorizer, authorize() reaches the queue without
    # awaiting anything (the key item's read for a signature check is the
    # only await before it), so one turn of the loop puts a new call there.
    return Gateway(lambda_env=env, token_key_name=KEY_NAME, handler=handler, **options)


def connecting(token: str) -> Presented:
    """The lamp connecting with a compact token in the username's query string."""
    return Presented(protocol="mqtt", tls=True, client_id=LAMP,
                     username=f"?x-amz-customauthorizer-name={COMPACT_AUTHORIZER}&{KEY_NAME}={quote(token, safe='')}")


def tokens_seen(recording: RecordingHandler) -> list[str]:
    return [event["token"] for event in recording.events]


@pytest.fixture
def lamp_tokens(lamp_key):
    """tokens(n) → n different compact tokens of the lamp."""
    return lambda n: [lamp_key.token(issued_at=int(time.time()) - i) for i in range(n)]


def test_a_call_that_runs_out_of_time_waiting_for_its_turn_never_reaches_the_handler(lamp_tokens, env):
    slow, queued, after = lamp_tokens(3)
    held = HoldsOneToken(build(env), slow)
    lam = RecordingHandler(held)

    async def scenario():
        # Long enough for the real handler's call after the slow one is
        # released, short enough to wait out.
        gateway = unsigned_gateway(env, lam, invoke_timeout=2)
        try:
            slow_call = asyncio.create_task(gateway.authorize(connecting(slow), connection_id="1"))
            assert await asyncio.to_thread(held.entered.wait, 10)
            with pytest.raises(Refused) as refused:
                await gateway.authorize(connecting(queued), connection_id="2")
            held.release.set()
            with pytest.raises(Refused):
                await slow_call
            served = await gateway.authorize(connecting(after), connection_id="3")
        finally:
            held.release.set()
            gateway.close()
        return refused.value.reason, served.principal_id

    reason, principal = asyncio.run(scenario())

    # Refused while still waiting for its turn (the 5 s limit covers the
    # wait), so its event never reached the handler; the gateway serves
    # the next call once the slow one has ended.
    assert reason == Reason.INVOKE_TIMEOUT
    assert tokens_seen(lam) == [slow, after]
    assert principal.startswith("d1x")


def test_past_the_waiting_bound_a_call_is_refused_at_once(lamp_tokens, env):
    slow, waiting, third = lamp_tokens(3)
    held = HoldsOneToken(build(env), slow)
    lam = RecordingHandler(held)

    async def scenario():
        gateway = unsigned_gateway(env, lam, invoke_timeout=30, max_waiting=1)
        try:
            slow_call = asyncio.create_task(gateway.authorize(connecting(slow), connection_id="1"))
            assert await asyncio.to_thread(held.entered.wait, 10)
            waiting_call = asyncio.create_task(gateway.authorize(connecting(waiting), connection_id="2"))
            for _ in range(3):
                await asyncio.sleep(0)  # lets it reach the queue
            with pytest.raises(Refused) as refused:
                await gateway.authorize(connecting(third), connection_id="3")
            held.release.set()
            grants = await asyncio.gather(slow_call, waiting_call)
        finally:
            held.release.set()
            gateway.close()
        return refused.value.reason, [grant.principal_id for grant in grants]

    reason, principals = asyncio.run(scenario())
    assert reason == Reason.INVOKE_THROTTLED
    assert len(principals) == 2 and all(principal.startswith("d1x") for principal in principals)
    assert tokens_seen(lam) == [slow, waiting]


# --- who may use the data plane ---------------------------------------------------------


def request(method, raw_path, *, query="", headers=None, body=b""):
    return Request(method=method, path=unquote(raw_path), raw_path=raw_path, query_string=query,
                   headers=dict(headers or {}), body=body, tls=True, server_name="localhost", source_ip="127.0.0.9")


def handle(server, req):
    response = server.run(server.plane.handle(req))
    return response.status, (json.loads(response.body) if response.body else None), response.headers


def decisions(caplog) -> list[dict]:
    """The gateway's decision lines (one per authorize call)."""
    return [json.loads(record.getMessage()) for record in caplog.records if record.name == "local_iot.gateway"]


COMMAND = f"dev/{LAMP}/in/cmd"  # user 7 controls the lamp


@pytest.mark.parametrize(("parameters", "reason"), [
    ({"x-amz-customauthorizer-name": "devshare", KEY_NAME: "stranger"}, Reason.NO_SIGNATURE),
    ({KEY_NAME: "stranger"}, Reason.NO_AUTHORIZER_NAME),
    ({"x-amz-customauthorizer-signature": "c2lnbmVk"}, Reason.NO_AUTHORIZER_NAME),
], ids=["name and token", "token", "signature"])
def test_authorizer_parameters_beside_a_valid_sigv4_still_go_through_the_authorizer(
        plane_server, plane_watcher, recording, caplog, parameters, reason):
    with caplog.at_level(logging.INFO, logger="local_iot.gateway"):
        status, body, _ = handle(plane_server, request("POST", "/topics/" + quote(COMMAND, safe=""),
                                                       headers={"authorization": sigv4("local"), **parameters},
                                                       body=b"on"))

    assert (status, body["message"]) == (401, "Unauthorized")
    # The gateway judged the request, once, and refused it before the Lambda.
    assert [(line["decision"], line["reason"]) for line in decisions(caplog)] == [("deny", reason)]
    assert recording.events == []
    assert published(plane_server, plane_watcher) == []


def test_authorizer_parameters_in_the_query_string_also_win_over_sigv4(plane_server, fn, recording):
    status, _, headers = handle(plane_server, request("GET", "/things/lamp/shadow", query=signed(fn).query(),
                                                      headers={"authorization": sigv4("local")}))

    # The custom authorizer over HTTPS only publishes, whatever else is signed.
    assert (status, headers["x-amzn-ErrorType"]) == (403, "ForbiddenException")
    assert recording.events == []


@pytest.mark.parametrize("key_id", ["AKIDOTHER", "testing"])
def test_sigv4_under_another_access_key_id_is_refused(plane_server, plane_watcher, key_id):
    status, _, headers = handle(plane_server, request("POST", "/topics/a/b", headers={"authorization": sigv4(key_id)},
                                                      body=b"p"))

    assert (status, headers["x-amzn-ErrorType"]) == (403, "UnrecognizedClientException")
    assert published(plane_server, plane_watcher) == []


def test_a_presigned_url_under_another_access_key_id_is_refused(plane_server, plane_watcher):
    query = ("X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=other%2F20261201%2Feu-west-1%2Fiotdata%2Faws4_request"
             "&X-Amz-Date=20261201T000000Z&X-Amz-SignedHeaders=host&X-Amz-Signature=" + "0" * 64)

    assert handle(plane_server, request("POST", "/topics/a/b", query=query, body=b"p"))[0] == 403
    assert published(plane_server, plane_watcher) == []


def test_boto3_signs_in_under_the_configured_access_key_id_only(env, fn, client, tmp_path):
    state, other, fence = (f"dev/{LAMP}/out/{name}" for name in ("state", "other", "fence"))
    with RunningLocalIot(env, cert_dir=tmp_path / "certs", access_key_id="devshare-local") as iot:
        # The owner of the lamp, through the real authorizer, sees what the broker routes.
        owner = client(APP, None, port=iot.mqtt_port, username=signed(fn).username())
        assert owner.subscribe(f"dev/{LAMP}/out/#") == [1]

        def iot_data(key_id):
            return boto3.client("iot-data", endpoint_url=f"http://127.0.0.1:{iot.http_port}",
                                region_name="eu-west-1", aws_access_key_id=key_id,
                                aws_secret_access_key="any-secret",  # noqa: S106
                                config=Config(retries={"max_attempts": 1}))

        iot_data("devshare-local").publish(topic=state, qos=1, payload=b"p")
        with pytest.raises(ClientError) as refused:
            iot_data("local").publish(topic=other, qos=1, payload=b"q")
        # Routed in order: the refused publish, had it been routed, would come before this.
        iot_data("devshare-local").publish(topic=fence, qos=1, payload=b"")
        first, second = owner.expect(), owner.expect()

    assert refused.value.response["Error"]["Code"] == "UnrecognizedClientException"
    assert (first.topic, first.payload, first.qos, first.retain) == (state, b"p", 1, False)
    assert second.topic == fence


def test_the_cli_takes_the_access_key_id():
    assert parser().parse_args([]).access_key_id == "local"
    assert parser().parse_args(["--access-key-id", "AKIDLOCAL"]).access_key_id == "AKIDLOCAL"


# --- the broker's topic rules -----------------------------------------------------------


def test_a_basic_ingest_topic_may_be_longer_than_other_topics(plane_server, plane_watcher):
    # AWS's limits exclude the $aws/rules/rule-name/ prefix (local_iot/topics.py).
    ingest = "$aws/rules/telemetry/" + "/".join("abcdefgh")
    plain = "x/y/z/" + "/".join("abcdefgh")
    # "#" does not match a topic beginning with "$". (AWS has no subscribers
    # for Basic Ingest topics, only rules; local_iot, without a rules engine,
    # routes them like any other, which shows what the data plane handed over.)
    assert plane_watcher.subscribe("$aws/rules/#", retain_as_published=True) == [1]

    signed_v4 = {"authorization": sigv4("local")}
    assert handle(plane_server, request("POST", "/topics/" + quote(ingest, safe=""), headers=signed_v4,
                                        body=b"1"))[0] == 200
    assert handle(plane_server, request("POST", "/topics/" + quote(plain, safe=""), headers=signed_v4,
                                        body=b"2"))[0] == 400
    assert published(plane_server, plane_watcher) == [Published(ingest, b"1", 0, False)]


# --- shadows ----------------------------------------------------------------------------

DEEP = b'{"state": {"desired": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}"


def test_json_nested_past_the_parsers_stack_is_rejected_as_invalid_json_over_mqtt():
    [(topic, payload)] = Shadows(clock=lambda: T).on_publish("$aws/things/lamp/shadow/update", DEEP)

    assert topic == "$aws/things/lamp/shadow/update/rejected"
    assert json.loads(payload) == {"code": 400, "message": "Invalid JSON", "timestamp": T}


def test_json_nested_past_the_parsers_stack_is_400_over_rest(plane_server, plane_watcher):
    status, body, headers = handle(plane_server, request("POST", "/things/lamp/shadow",
                                                         headers={"authorization": sigv4("local")}, body=DEEP))

    assert (status, headers["x-amzn-ErrorType"], body) == (400, "InvalidRequestException", {"message": "Invalid JSON"})
    assert published(plane_server, plane_watcher) == []


def update(shadows, name, **request):
    return shadows.on_publish(f"$aws/things/lamp/shadow/name/{name}/update",
                              json.dumps({"state": {"reported": {"on": True}}, **request}).encode())


def test_a_thing_holds_a_bounded_number_of_shadows():
    shadows = Shadows(clock=lambda: T)
    for number in range(MAX_SHADOWS_PER_THING):
        assert update(shadows, f"s{number}")[0][0].endswith("/update/accepted")

    [(topic, payload)] = update(shadows, "one-more")

    assert topic.endswith("/update/rejected")
    assert json.loads(payload)["code"] == 400
    assert len(shadows.names("lamp")) == MAX_SHADOWS_PER_THING
    # Another thing is not affected.
    assert shadows.on_publish("$aws/things/door/shadow/update", b'{"state": {"reported": {"x": 1}}}')[0][0] \
        == "$aws/things/door/shadow/update/accepted"


def test_a_deleted_shadow_makes_room_for_a_new_one():
    shadows = Shadows(clock=lambda: T)
    for number in range(MAX_SHADOWS_PER_THING):
        update(shadows, f"s{number}")
    shadows.delete("lamp", "s0")

    assert update(shadows, "new")[0][0].endswith("/update/accepted")
    assert "new" in shadows.names("lamp") and "s0" not in shadows.names("lamp")


def test_refused_updates_leave_nothing_behind():
    shadows = Shadows(clock=lambda: T)
    # Version conflicts on shadows that do not exist: each refused, none kept.
    for number in range(MAX_SHADOWS_PER_THING):
        [(topic, _)] = update(shadows, f"conflict{number}", version=7)
        assert topic.endswith("/update/rejected")

    assert shadows.names("lamp") == []
    assert update(shadows, "real")[0][0].endswith("/update/accepted")


# --- the grant's remembered verdicts -------------------------------------------------------


def test_a_grant_asked_about_more_topics_than_it_remembers_still_answers_each_rightly():
    grant = Grant(principal_id="p1", documents=(document({"iot:Connect": ["app"], "iot:Publish": ["dev/lamp/in/*"]},
                                                         {"iot:Publish": ["dev/lamp/in/secret"]}),),
                  refresh_in=300, disconnect_in=3600, region=REGION, account=ACCOUNT, client_id="app")
    asked = [f"dev/lamp/in/{n}" for n in range(limits.VERDICTS_PER_GRANT + 10)]

    first = [grant.can("iot:Publish", topic) for topic in asked]
    again = [grant.can("iot:Publish", topic) for topic in reversed(asked)]

    assert first == again[::-1] == [True] * len(asked)
    assert [grant.can("iot:Publish", t) for t in ("dev/lamp/in/secret", "dev/fan/in/on", "dev/lamp/in/secret")] == [
        False, False, False]
    assert grant.can("iot:Receive", "dev/lamp/in/0") is False  # another action, another verdict
