"""Real boto3 `iot-data` and real curl against the data plane
(docs/local-iot.md#the-data-plane), served over HTTP by the stand-in
listener of tests/support/dataplane_http.py: botocore serializes the
requests and parses the answers, modelled exceptions included.

The broker and the gateway are the recording stand-ins of
tests/support/iot_siblings.py until the parts are integrated.
"""
import json
import subprocess

import boto3
import pytest
from botocore import UNSIGNED
from botocore.config import Config

from local_iot.dataplane import DataPlane
from local_iot.shadow import Shadows
from tests.support.dataplane_http import DataPlaneServer
from tests.support.iot_siblings import ListedGrant, Published, RecordingBroker, TokenGateway

T = 1_700_000_000


@pytest.fixture
def broker():
    return RecordingBroker({"app-1": {"connected": True, "clientId": "app-1", "thingName": "lamp",
                                      "cleanSession": False, "keepAliveDuration": 30,
                                      "connectedSince": 1_700_000_000_000,
                                      "sourceIp": "127.0.0.1", "sourcePort": 50000}})


@pytest.fixture
def gateway():
    return TokenGateway("devshare-token", {"owner": ListedGrant(frozenset({("iot:Publish", "dev/lamp/in/cmd")}))})


@pytest.fixture
def server(broker, gateway):
    served = DataPlaneServer(DataPlane(broker=broker, shadows=Shadows(clock=lambda: T), gateway=gateway))
    yield served
    served.close()


@pytest.fixture
def iot_data(server):
    return boto3.client("iot-data", endpoint_url=server.url, region_name="eu-west-1",
                        aws_access_key_id="AKIDLOCAL", aws_secret_access_key="local-secret",
                        config=Config(retries={"max_attempts": 1}))


def payload_of(response) -> dict:
    return json.loads(response["payload"].read())


# --- shadows ----------------------------------------------------------------------------


def test_update_then_get_a_classic_shadow(iot_data):
    accepted = payload_of(iot_data.update_thing_shadow(
        thingName="lamp", payload=json.dumps({"state": {"desired": {"color": "red"}}, "clientToken": "b"})))
    iot_data.update_thing_shadow(thingName="lamp", payload=b'{"state": {"reported": {"color": "blue"}}}')

    got = payload_of(iot_data.get_thing_shadow(thingName="lamp"))

    assert accepted == {"state": {"desired": {"color": "red"}},
                        "metadata": {"desired": {"color": {"timestamp": T}}},
                        "version": 1, "timestamp": T, "clientToken": "b"}
    assert got == {"state": {"desired": {"color": "red"}, "reported": {"color": "blue"}, "delta": {"color": "red"}},
                   "metadata": {"desired": {"color": {"timestamp": T}}, "reported": {"color": {"timestamp": T}}},
                   "version": 2, "timestamp": T}


def test_named_shadows_are_apart_from_the_classic_one(iot_data):
    iot_data.update_thing_shadow(thingName="lamp", shadowName="config", payload=b'{"state": {"reported": {"r": 1}}}')

    assert payload_of(iot_data.get_thing_shadow(thingName="lamp", shadowName="config"))["state"] == {
        "reported": {"r": 1}}
    with pytest.raises(iot_data.exceptions.ResourceNotFoundException) as missing:
        iot_data.get_thing_shadow(thingName="lamp")
    assert missing.value.response["Error"]["Message"] == "No shadow exists with name: 'lamp'"


def test_a_stale_version_raises_conflict(iot_data):
    iot_data.update_thing_shadow(thingName="lamp", payload=b'{"state": {"reported": {"a": 1}}}')

    with pytest.raises(iot_data.exceptions.ConflictException) as conflict:
        iot_data.update_thing_shadow(thingName="lamp", payload=b'{"state": {"reported": {"a": 2}}, "version": 0}')
    assert conflict.value.response["Error"]["Message"] == "Version conflict"


@pytest.mark.parametrize(("payload", "exception"), [
    (b"{oops", "InvalidRequestException"),
    (b'{"state": {"desired": 3}}', "InvalidRequestException"),
    (json.dumps({"state": {"reported": {"big": "x" * 9000}}}).encode(), "RequestEntityTooLargeException"),
    (b'{"state": {"reported": {"a": "\xff"}}}', "UnsupportedDocumentEncodingException"),
])
def test_refused_updates_raise_the_modelled_exception(iot_data, payload, exception):
    with pytest.raises(getattr(iot_data.exceptions, exception)):
        iot_data.update_thing_shadow(thingName="lamp", payload=payload)


def test_delete_returns_the_version_and_the_shadow_is_gone(iot_data, broker):
    iot_data.update_thing_shadow(thingName="lamp", shadowName="config", payload=b'{"state": {"reported": {"a": 1}}}')

    deleted = payload_of(iot_data.delete_thing_shadow(thingName="lamp", shadowName="config"))

    assert deleted == {"version": 1, "timestamp": T}
    assert broker.published[-1] == Published("$aws/things/lamp/shadow/name/config/delete/accepted",
                                             broker.published[-1].payload, 1, False)
    with pytest.raises(iot_data.exceptions.ResourceNotFoundException):
        iot_data.delete_thing_shadow(thingName="lamp", shadowName="config")


def test_list_named_shadows_pages_through_the_names(iot_data):
    for name in ("c", "a", "b"):
        iot_data.update_thing_shadow(thingName="lamp", shadowName=name, payload=b'{"state": {"reported": {"x": 1}}}')
    iot_data.update_thing_shadow(thingName="lamp", payload=b'{"state": {"reported": {"x": 1}}}')

    first = iot_data.list_named_shadows_for_thing(thingName="lamp", pageSize=2)
    second = iot_data.list_named_shadows_for_thing(thingName="lamp", pageSize=2, nextToken=first["nextToken"])

    assert (first["results"], first["timestamp"]) == (["a", "b"], T)
    assert second["results"] == ["c"] and "nextToken" not in second


# --- publish and connections ------------------------------------------------------------


def test_publish_reaches_the_broker_with_its_options(iot_data, broker):
    iot_data.publish(topic="dev/lamp/in/cmd", qos=1, retain=True, payload=b'{"on": true}',
                     contentType="application/json", userProperties=json.dumps([{"k": "v"}]),
                     payloadFormatIndicator="UTF8_DATA", messageExpiry=60)

    assert broker.published == [Published("dev/lamp/in/cmd", b'{"on": true}', 1, True)]


def test_publish_to_a_wildcard_topic_is_an_invalid_request(iot_data, broker):
    with pytest.raises(iot_data.exceptions.InvalidRequestException):
        iot_data.publish(topic="dev/+/in/cmd", payload=b"x")
    assert broker.published == []


def test_get_connection(iot_data):
    connection = iot_data.get_connection(clientId="app-1")

    assert (connection["clientId"], connection["connected"], connection["thingName"]) == ("app-1", True, "lamp")
    assert (connection["cleanSession"], connection["keepAliveDuration"]) == (False, 30)
    assert "sourceIp" not in connection
    assert iot_data.get_connection(clientId="app-1", includeSocketInformation=True)["sourcePort"] == 50000
    with pytest.raises(iot_data.exceptions.ResourceNotFoundException):
        iot_data.get_connection(clientId="nobody")


def test_delete_connection(iot_data, broker):
    iot_data.delete_connection(clientId="app-1", cleanSession=True, preventWillMessage=True)

    assert broker.deleted == [("app-1", True, True)]
    with pytest.raises(iot_data.exceptions.ResourceNotFoundException):
        iot_data.delete_connection(clientId="app-1")


def test_an_unsigned_client_is_forbidden(server, broker):
    unsigned = boto3.client("iot-data", endpoint_url=server.url, region_name="eu-west-1",
                            config=Config(signature_version=UNSIGNED, retries={"max_attempts": 1}))

    with pytest.raises(unsigned.exceptions.ClientError) as refused:
        unsigned.publish(topic="dev/lamp/in/cmd", payload=b"x")

    assert refused.value.response["Error"]["Code"] == "ForbiddenException"
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert broker.published == []


# --- curl, as the seeds publish ---------------------------------------------------------


def curl(url: str, *headers: str) -> tuple[int, dict]:
    arguments = ["curl", "-sS", "-X", "POST", "--data-binary", '{"on": 1}', "-w", "\n%{http_code}", url]
    for header in headers:
        arguments += ["-H", header]
    out = subprocess.run(arguments, capture_output=True, text=True, check=True, timeout=30).stdout
    body, status = out.rsplit("\n", 1)
    return int(status), json.loads(body)


def test_curl_publishes_with_the_authorizers_headers(server, broker):
    status, body = curl(f"{server.url}/topics/dev/lamp/in/cmd?qos=1", "x-amz-customauthorizer-name: devshare",
                        "x-amz-customauthorizer-signature: c2ln", "devshare-token: owner")

    assert (status, body["message"]) == (200, "OK")
    assert broker.published == [Published("dev/lamp/in/cmd", b'{"on": 1}', 1, False)]


def test_curl_is_refused_a_foreign_topic_and_an_unknown_token(server, broker):
    foreign = curl(f"{server.url}/topics/dev/other/in/cmd", "x-amz-customauthorizer-name: devshare",
                   "devshare-token: owner")
    unknown = curl(f"{server.url}/topics/dev/lamp/in/cmd?x-amz-customauthorizer-name=devshare&devshare-token=nope")

    assert (foreign[0], foreign[1]["message"]) == (403, "Forbidden")
    assert (unknown[0], unknown[1]["message"]) == (401, "Unauthorized")
    assert broker.published == []
