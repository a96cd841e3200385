"""Real boto3 `iot-data` and real curl against the data plane
(docs/local-iot.md#the-data-plane) on local_iot's own HTTP listener:
botocore serializes the requests and parses the answers, modelled
exceptions included. Behind it the real broker (its clients admitted by a
PolicyGateway) and shadow service, and for curl's HTTPS publish the gateway
invoking the real authorizer handler on moto with real tokens. What was
published is what a client watching every topic received.
"""
import json
import subprocess

import boto3
import pytest
from botocore import UNSIGNED
from botocore.config import Config

from tests.support.broker_server import FROZEN_NOW as T
from tests.support.broker_server import Published, published
from tests.support.local_iot import LAMP, signed

COMMAND = f"dev/{LAMP}/in/cmd"  # user 7 controls the lamp


@pytest.fixture
def iot_data(plane_server):
    return boto3.client("iot-data", endpoint_url=plane_server.http_url, region_name="eu-west-1",
                        aws_access_key_id="local", aws_secret_access_key="local-secret",  # noqa: S106
                        config=Config(retries={"max_attempts": 1}))


def payload_of(response) -> dict:
    return json.loads(response["payload"].read())


# MQTT 3.1.1, a persistent session, keep-alive 30 s, a will.
APP = {"version": 4, "clean": False, "keepalive": 30, "will": ("wills/app-1", b"gone", 1, False)}


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


def test_delete_returns_the_version_and_the_shadow_is_gone(iot_data, plane_server, plane_watcher):
    iot_data.update_thing_shadow(thingName="lamp", shadowName="config", payload=b'{"state": {"reported": {"a": 1}}}')
    published(plane_server, plane_watcher)

    deleted = payload_of(iot_data.delete_thing_shadow(thingName="lamp", shadowName="config"))

    assert deleted == {"version": 1, "timestamp": T}
    [announced] = published(plane_server, plane_watcher)
    assert (announced.topic, json.loads(announced.payload), announced.qos) == (
        "$aws/things/lamp/shadow/name/config/delete/accepted", deleted, 1)
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


def test_publish_reaches_the_broker_with_its_options(iot_data, plane_server, plane_watcher):
    iot_data.publish(topic="dev/lamp/in/cmd", qos=1, retain=True, payload=b'{"on": true}',
                     contentType="application/json", userProperties=json.dumps([{"k": "v"}]),
                     payloadFormatIndicator="UTF8_DATA", messageExpiry=60)

    assert published(plane_server, plane_watcher) == [Published("dev/lamp/in/cmd", b'{"on": true}', 1, True)]


def test_publish_to_a_wildcard_topic_is_an_invalid_request(iot_data, plane_server, plane_watcher):
    with pytest.raises(iot_data.exceptions.InvalidRequestException):
        iot_data.publish(topic="dev/+/in/cmd", payload=b"x")
    assert published(plane_server, plane_watcher) == []


def test_get_connection(iot_data, connect_app):
    connect_app(**APP)

    connection = iot_data.get_connection(clientId="app-1")

    assert (connection["clientId"], connection["connected"]) == ("app-1", True)
    assert (connection["cleanSession"], connection["keepAliveDuration"]) == (False, 30)
    assert "sourceIp" not in connection
    with pytest.raises(iot_data.exceptions.ResourceNotFoundException):
        iot_data.get_connection(clientId="nobody")


def test_delete_connection(iot_data, connect_app, plane_server, plane_watcher):
    app = connect_app(**APP)

    iot_data.delete_connection(clientId="app-1", cleanSession=True, preventWillMessage=True)

    app.wait_disconnected()
    assert published(plane_server, plane_watcher) == []  # no will
    with pytest.raises(iot_data.exceptions.ResourceNotFoundException):
        iot_data.delete_connection(clientId="app-1")
    assert connect_app(**APP).connack[1] is False  # the session went with it


def test_an_unsigned_client_is_forbidden(plane_server, plane_watcher):
    unsigned = boto3.client("iot-data", endpoint_url=plane_server.http_url, region_name="eu-west-1",
                            config=Config(signature_version=UNSIGNED, retries={"max_attempts": 1}))

    with pytest.raises(unsigned.exceptions.ClientError) as refused:
        unsigned.publish(topic="dev/lamp/in/cmd", payload=b"x")

    assert refused.value.response["Error"]["Code"] == "ForbiddenException"
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert published(plane_server, plane_watcher) == []


# --- curl, as the seeds publish ---------------------------------------------------------


def curl(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict]:
    arguments = ["curl", "-sS", "-X", "POST", "--data-binary", '{"on": 1}', "-w", "\n%{http_code}", url]
    for name, value in (headers or {}).items():
        arguments += ["-H", f"{name}: {value}"]
    out = subprocess.run(arguments, capture_output=True, text=True, check=True, timeout=30).stdout
    body, status = out.rsplit("\n", 1)
    return int(status), json.loads(body)


def test_curl_publishes_with_the_authorizers_headers(plane_server, plane_watcher, fn):
    status, body = curl(f"{plane_server.http_url}/topics/{COMMAND}?qos=1", signed(fn).headers())

    assert (status, body["message"]) == (200, "OK")
    assert published(plane_server, plane_watcher) == [Published(COMMAND, b'{"on": 1}', 1, False)]


def test_curl_is_refused_a_foreign_topic_and_an_unknown_token(plane_server, plane_watcher, fn):
    foreign = curl(f"{plane_server.http_url}/topics/dev/d-other0000001/in/cmd", signed(fn).headers())
    unknown = curl(f"{plane_server.http_url}/topics/{COMMAND}?x-amz-customauthorizer-name=devshare"
                   "&devshare-token=nope")

    assert (foreign[0], foreign[1]["message"]) == (403, "Forbidden")
    assert (unknown[0], unknown[1]["message"]) == (401, "Unauthorized")
    assert published(plane_server, plane_watcher) == []
