"""The gateway's, the data plane's and the shadow service's limits
(docs/local-iot.md#the-custom-authorizer-contract, #the-data-plane,
#device-shadows): one invocation at a time within the 5 s limit and a
bounded queue; SigV4 only under the local access key id, and never instead
of the authorizer; the broker's topic rules for HTTPS publish; shadow
requests that cannot exhaust the stack or memory.
"""
import asyncio
import json
import threading
from urllib.parse import quote, unquote

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from local_iot.__main__ import parser
from local_iot.dataplane import DataPlane
from local_iot.gateway import Gateway, Presented, Reason, Refused
from local_iot.http import Request
from local_iot.shadow import MAX_SHADOWS_PER_THING, Shadows
from tests.support.dataplane_http import DataPlaneServer
from tests.support.iot_siblings import ListedGrant, Published, RecordingBroker, TokenGateway

T = 1_700_000_000
ALLOW = {"isAuthenticated": True, "principalId": "p1", "policyDocuments": [],
         "refreshAfterInSeconds": 300, "disconnectAfterInSeconds": 3600}


def sigv4(key_id: str) -> str:
    return (f"AWS4-HMAC-SHA256 Credential={key_id}/20261201/eu-west-1/iotdata/aws4_request, "
            "SignedHeaders=host;x-amz-date, Signature=" + "ab" * 32)


def connect_with(token: str) -> Presented:
    return Presented(protocol="mqtt", tls=True, client_id="c1",
                     username=f"?x-amz-customauthorizer-name=devshare&devshare-token={token}")


class SlowFirstHandler:
    """The authorizer's handler as the gateway calls it: records each token
    it is called with and holds the call for the token "slow" until told."""

    def __init__(self):
        self.seen: list[str] = []
        self.entered, self.release = threading.Event(), threading.Event()

    def __call__(self, event, context):
        self.seen.append(event["token"])
        if event["token"] == "slow":
            self.entered.set()
            self.release.wait(30)
        return ALLOW


def gateway_with(handler, **options) -> Gateway:
    return Gateway(lambda_env={}, authorizer_name="devshare", token_key_name="devshare-token", signing=False,
                   handler=handler, **options)


# --- the invocation ---------------------------------------------------------------------


def test_a_call_that_runs_out_of_time_waiting_for_its_turn_never_reaches_the_handler():
    handler = SlowFirstHandler()

    async def scenario():
        gateway = gateway_with(handler, invoke_timeout=0.5)
        slow = asyncio.create_task(gateway.authorize(connect_with("slow"), connection_id="1"))
        assert await asyncio.to_thread(handler.entered.wait, 10)
        with pytest.raises(Refused) as queued:
            await gateway.authorize(connect_with("queued"), connection_id="2")
        handler.release.set()
        with pytest.raises(Refused):
            await slow
        after = await gateway.authorize(connect_with("after"), connection_id="3")
        gateway.close()
        return queued.value, after.principal_id

    queued, after = asyncio.run(scenario())
    # Refused while still waiting for the turn (the 5 s limit covers the
    # wait), so its event never reached the handler.
    assert (queued.reason, queued.detail, after) == (Reason.INVOKE_TIMEOUT, "no turn in 0.5 s", "p1")
    assert handler.seen == ["slow", "after"]


def test_past_the_waiting_bound_a_call_is_refused_at_once():
    handler = SlowFirstHandler()

    async def scenario():
        gateway = gateway_with(handler, invoke_timeout=30, max_waiting=1)
        slow = asyncio.create_task(gateway.authorize(connect_with("slow"), connection_id="1"))
        assert await asyncio.to_thread(handler.entered.wait, 10)
        waiting = asyncio.create_task(gateway.authorize(connect_with("waiting"), connection_id="2"))
        for _ in range(3):
            await asyncio.sleep(0)  # lets it reach the queue
        with pytest.raises(Refused) as third:
            await gateway.authorize(connect_with("third"), connection_id="3")
        handler.release.set()
        grants = await asyncio.gather(slow, waiting)
        gateway.close()
        return third.value.reason, [grant.principal_id for grant in grants]

    assert asyncio.run(scenario()) == (Reason.INVOKE_THROTTLED, ["p1", "p1"])
    assert handler.seen == ["slow", "waiting"]


# --- who may use the data plane ---------------------------------------------------------


@pytest.fixture
def broker():
    return RecordingBroker()


@pytest.fixture
def token_gateway():
    return TokenGateway("devshare-token", {"owner": ListedGrant(frozenset({("iot:Publish", "dev/lamp/in/cmd")}))})


@pytest.fixture
def plane(broker, token_gateway):
    return DataPlane(broker=broker, shadows=Shadows(clock=lambda: T), gateway=token_gateway)


def handle(plane, method, raw_path, *, headers=None, query="", body=b""):
    request = Request(method=method, path=unquote(raw_path), raw_path=raw_path, query_string=query,
                      headers=dict(headers or {}), body=body, tls=True, server_name="localhost",
                      source_ip="127.0.0.9")
    response = asyncio.run(plane.handle(request))
    return response.status, json.loads(response.body) if response.body else None, response.headers


@pytest.mark.parametrize("parameters", [
    {"x-amz-customauthorizer-name": "devshare", "devshare-token": "stranger"},
    {"devshare-token": "stranger"},
    {"x-amz-customauthorizer-signature": "c2lnbmVk"},
])
def test_authorizer_parameters_beside_a_valid_sigv4_still_go_through_the_authorizer(plane, broker, token_gateway,
                                                                                      parameters):
    status, body, _ = handle(plane, "POST", "/topics/dev%2Flamp%2Fin%2Fcmd",
                             headers={"authorization": sigv4("local"), **parameters}, body=b"on")

    assert (status, body["message"]) == (401, "Unauthorized")
    assert len(token_gateway.calls) == 1
    assert broker.published == []


def test_authorizer_parameters_in_the_query_string_also_win_over_sigv4(plane, broker):
    status, _, _ = handle(plane, "GET", "/things/lamp/shadow", headers={"authorization": sigv4("local")},
                          query="x-amz-customauthorizer-name=devshare&devshare-token=owner")

    # The custom authorizer over HTTPS only publishes, whatever else is signed.
    assert status == 403


@pytest.mark.parametrize("key_id", ["AKIDOTHER", "testing"])
def test_sigv4_under_another_access_key_id_is_refused(plane, broker, key_id):
    status, _, headers = handle(plane, "POST", "/topics/a/b", headers={"authorization": sigv4(key_id)}, body=b"p")

    assert (status, headers["x-amzn-ErrorType"]) == (403, "UnrecognizedClientException")
    assert broker.published == []


def test_a_presigned_url_under_another_access_key_id_is_refused(plane, broker):
    query = ("X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=other%2F20261201%2Feu-west-1%2Fiotdata%2Faws4_request"
             "&X-Amz-Date=20261201T000000Z&X-Amz-SignedHeaders=host&X-Amz-Signature=" + "0" * 64)

    assert handle(plane, "POST", "/topics/a/b", query=query, body=b"p")[0] == 403
    assert broker.published == []


def test_boto3_signs_in_under_the_configured_access_key_id_only(broker, token_gateway):
    served = DataPlaneServer(DataPlane(broker=broker, shadows=Shadows(clock=lambda: T), gateway=token_gateway,
                                       access_key_id="devshare-local"))
    try:
        def client(key_id):
            return boto3.client("iot-data", endpoint_url=served.url, region_name="eu-west-1",
                                aws_access_key_id=key_id, aws_secret_access_key="any-secret",
                                config=Config(retries={"max_attempts": 1}))

        client("devshare-local").publish(topic="a/b", qos=1, payload=b"p")
        with pytest.raises(ClientError) as refused:
            client("local").publish(topic="a/c", qos=1, payload=b"q")
    finally:
        served.close()

    assert refused.value.response["Error"]["Code"] == "UnrecognizedClientException"
    assert broker.published == [Published("a/b", b"p", 1, False)]


def test_the_cli_takes_the_access_key_id():
    assert parser().parse_args([]).access_key_id == "local"
    assert parser().parse_args(["--access-key-id", "AKIDLOCAL"]).access_key_id == "AKIDLOCAL"


# --- the broker's topic rules -----------------------------------------------------------


def test_a_basic_ingest_topic_may_be_longer_than_other_topics(plane, broker):
    # AWS's limits exclude the $aws/rules/rule-name/ prefix (local_iot/topics.py).
    ingest = "$aws/rules/telemetry/" + "/".join("abcdefgh")
    plain = "x/y/z/" + "/".join("abcdefgh")

    assert handle(plane, "POST", "/topics/" + quote(ingest, safe=""), headers={"authorization": sigv4("local")},
                  body=b"1")[0] == 200
    assert handle(plane, "POST", "/topics/" + quote(plain, safe=""), headers={"authorization": sigv4("local")},
                  body=b"2")[0] == 400
    assert broker.published == [Published(ingest, b"1", 0, False)]


# --- shadows ----------------------------------------------------------------------------

DEEP = b'{"state": {"desired": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}"


def test_json_nested_past_the_parsers_stack_is_rejected_as_invalid_json_over_mqtt():
    [(topic, payload)] = Shadows(clock=lambda: T).on_publish("$aws/things/lamp/shadow/update", DEEP)

    assert topic == "$aws/things/lamp/shadow/update/rejected"
    assert json.loads(payload) == {"code": 400, "message": "Invalid JSON", "timestamp": T}


def test_json_nested_past_the_parsers_stack_is_400_over_rest(plane, broker):
    status, body, headers = handle(plane, "POST", "/things/lamp/shadow", headers={"authorization": sigv4("local")},
                                   body=DEEP)

    assert (status, headers["x-amzn-ErrorType"], body) == (400, "InvalidRequestException", {"message": "Invalid JSON"})
    assert broker.published == []


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
