"""The data plane's routing, callers and error shapes
(docs/local-iot.md#the-data-plane), through DataPlane.handle with Request
objects, so that a test sets what the listener would (TLS, server name,
source address). Everything behind it is real: the broker (its clients
admitted by a PolicyGateway), the shadow service, and for HTTPS publish the
gateway invoking the real authorizer handler on moto with real tokens.
What the data plane published is what a client watching every topic
received (tests/support/broker_server.py `published`).
"""
import json
import logging
import uuid
from urllib.parse import quote, unquote

import pytest

from lambda_bridge import snapshot
from lambda_bridge.snapshot import Entry
from local_iot.http import Request
from tests.support.broker_server import FROZEN_NOW as T
from tests.support.broker_server import Published, published
from tests.support.local_iot import LAMP, signed
from tests.support.policy_gateway import ACCOUNT, REGION

SIGV4 = ("AWS4-HMAC-SHA256 Credential=local/20261201/eu-west-1/iotdata/aws4_request, "
         "SignedHeaders=host;x-amz-date, Signature=" + "ab" * 32)
COMMAND = f"dev/{LAMP}/in/cmd"  # user 7 controls the lamp: iot:Publish, not iot:RetainPublish


def request(method, raw_path, *, query="", headers=None, body=b"", tls=True):
    return Request(method=method, path=unquote(raw_path), raw_path=raw_path, query_string=query,
                   headers=dict(headers or {}), body=body, tls=tls, server_name="localhost", source_ip="127.0.0.9")


def handle(server, req):
    response = server.run(server.plane.handle(req))
    return response.status, (json.loads(response.body) if response.body else None), response.headers


def signed_with_sigv4(**headers):
    return {"authorization": SIGV4, **headers}


# --- HTTPS publish through the custom authorizer ----------------------------------------


def test_an_allowed_https_publish_is_passed_to_the_broker_and_answered_ok(plane_server, plane_watcher, fn):
    status, body, _ = handle(plane_server, request("POST", "/topics/" + quote(COMMAND, safe=""), query="qos=1",
                                                   headers=signed(fn).headers(), body=b'{"on":1}'))

    assert status == 200
    assert body["message"] == "OK"
    uuid.UUID(body["traceId"])
    assert published(plane_server, plane_watcher) == [Published(COMMAND, b'{"on":1}', 1, False)]


def test_the_authorizer_is_sent_the_request_as_an_https_event(plane_server, fn, recording, caplog):
    credentials = signed(fn)
    headers = {"x-amz-customauthorizer-signature": credentials.signature, "devshare-token": credentials.token}
    with caplog.at_level(logging.INFO, logger="local_iot.gateway"):
        handle(plane_server, request("POST", f"/topics/{COMMAND}", query="x-amz-customauthorizer-name=devshare",
                                     headers=headers))

    # The event's shape: https://docs.aws.amazon.com/iot/latest/developerguide/custom-auth-lambda.html
    (event,) = recording.events
    assert event["token"] == credentials.token
    assert event["signatureVerified"] is True
    assert event["protocols"] == ["tls", "http"]
    assert event["protocolData"] == {
        "tls": {"serverName": "localhost"},
        "http": {"headers": headers, "queryString": "?x-amz-customauthorizer-name=devshare"}}
    uuid.UUID(event["connectionMetadata"]["id"])
    # The gateway's decision line names the caller's address, and no client id.
    (line,) = [json.loads(record.getMessage()) for record in caplog.records if record.name == "local_iot.gateway"]
    assert (line["protocol"], line["source_ip"], line["client_id"], line["decision"]) == (
        "http", "127.0.0.9", None, "allow")


def test_the_authorizer_parameters_may_all_be_in_the_query_string(plane_server, plane_watcher, fn):
    status, body, _ = handle(plane_server, request("POST", f"/topics/{COMMAND}", query=signed(fn).query(), body=b"x"))

    assert (status, body["message"]) == (200, "OK")
    assert published(plane_server, plane_watcher) == [Published(COMMAND, b"x", 0, False)]


@pytest.mark.parametrize("token", ["expired", "forged"])
def test_a_token_the_gateway_refuses_is_401_and_nothing_is_published(plane_server, plane_watcher, fn, token):
    credentials = signed(fn, lifetime=-60) if token == "expired" else signed(fn, sign_with="stranger")
    status, body, _ = handle(plane_server, request("POST", f"/topics/{COMMAND}", headers=credentials.headers()))

    assert (status, body["message"]) == (401, "Unauthorized")
    uuid.UUID(body["traceId"])
    assert published(plane_server, plane_watcher) == []


def test_a_topic_outside_the_policy_is_403(plane_server, plane_watcher, fn):
    status, body, _ = handle(plane_server, request("POST", "/topics/dev/d-other0000001/in/cmd",
                                                   headers=signed(fn).headers()))

    assert (status, body["message"]) == (403, "Forbidden")
    assert published(plane_server, plane_watcher) == []


def test_a_retained_publish_also_needs_retain_publish(plane_server, plane_watcher, fn):
    # The person may publish the command but not retain it; the device may
    # retain its state (docs/topics-and-policies.md#what-the-authorizer-grants).
    fn.put_snapshot(kind=snapshot.DEVICE, principal=LAMP, entries=[Entry(LAMP, snapshot.OWNER)])
    person = handle(plane_server, request("POST", f"/topics/{COMMAND}", query="retain=true",
                                          headers=signed(fn).headers()))
    device = handle(plane_server, request("POST", f"/topics/dev/{LAMP}/out/state", query="retain=true&qos=1",
                                          headers=signed(fn, sub=f"device:{LAMP}").headers(), body=b"s"))

    assert person[0] == 403
    assert device[0] == 200
    assert published(plane_server, plane_watcher) == [Published(f"dev/{LAMP}/out/state", b"s", 1, True)]


def test_https_publish_does_not_ask_for_iot_connect(plane_server, fn, recording):
    status, _, _ = handle(plane_server, request("POST", f"/topics/{COMMAND}", headers=signed(fn).headers()))

    # The grant's iot:Connect names the app's client id; an HTTPS publish has
    # no client id, and is allowed on iot:Publish alone.
    statements = [statement for text in recording.answers[0]["policyDocuments"]
                  for statement in json.loads(text)["Statement"]]
    connect = [statement["Resource"] for statement in statements if statement["Action"] in ("iot:Connect",
                                                                                           ["iot:Connect"])]
    assert connect == [[f"arn:aws:iot:{REGION}:{ACCOUNT}:client/u1.7.app"]]
    assert status == 200


@pytest.mark.parametrize(("method", "path"), [("GET", "/things/lamp/shadow"), ("POST", "/things/lamp/shadow"),
                                              ("GET", "/connections/app-1"), ("DELETE", "/connections/app-1")])
def test_the_custom_authorizer_only_publishes(plane_server, connect_app, fn, recording, method, path):
    connect_app()

    status, _, headers = handle(plane_server, request(method, path, headers=signed(fn).headers(),
                                                      body=b'{"state": {"desired": {"a": 1}}}'))

    assert status == 403
    assert headers["x-amzn-ErrorType"] == "ForbiddenException"
    assert recording.events == []
    assert plane_server.call(plane_server.broker.get_connection, "app-1")["connected"] is True
    assert handle(plane_server, request("GET", "/things/lamp/shadow", headers=signed_with_sigv4()))[0] == 404


# --- callers without credentials --------------------------------------------------------


@pytest.mark.parametrize("authorization", [None, "Bearer abc", "AWS4-HMAC-SHA256 Credential=x",
                                           SIGV4.replace("aws4_request", "aws5_request")])
def test_a_request_without_sigv4_or_authorizer_parameters_is_403(plane_server, plane_watcher, authorization):
    headers = {} if authorization is None else {"authorization": authorization}
    status, body, response_headers = handle(plane_server, request("POST", "/topics/dev/lamp/in/cmd", headers=headers))

    assert status == 403
    assert response_headers["x-amzn-ErrorType"] == "ForbiddenException"
    assert body == {"message": "Missing Authentication Token"}
    assert published(plane_server, plane_watcher) == []


def test_a_presigned_url_counts_as_sigv4(plane_server, plane_watcher):
    query = ("X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=local%2F20261201%2Feu-west-1%2Fiotdata%2Faws4_request"
             "&X-Amz-Date=20261201T000000Z&X-Amz-SignedHeaders=host&X-Amz-Signature=" + "0" * 64)
    status, _, _ = handle(plane_server, request("POST", "/topics/a/b", query=query, body=b"p"))

    assert status == 200
    assert published(plane_server, plane_watcher) == [Published("a/b", b"p", 0, False)]


# --- publish's limits -------------------------------------------------------------------


@pytest.mark.parametrize(("topic", "status"), [
    ("a/+/c", 400), ("a/#", 400), ("/".join("a" * 9), 400), ("t" * 257, 400),
    ("/".join("a" * 8), 200), ("t" * 256, 200),
])
def test_topic_limits(plane_server, topic, status):
    assert handle(plane_server, request("POST", "/topics/" + quote(topic, safe=""),
                                        headers=signed_with_sigv4()))[0] == status


@pytest.mark.parametrize(("size", "status"), [(128 * 1024, 200), (128 * 1024 + 1, 413)])
def test_payload_limit(plane_server, size, status):
    got, _, _ = handle(plane_server, request("POST", "/topics/a", headers=signed_with_sigv4(), body=b"x" * size))
    assert got == status


@pytest.mark.parametrize("query", ["qos=2", "qos=x", "retain=yes", "qos=-1"])
def test_bad_publish_parameters_are_invalid_requests(plane_server, plane_watcher, query):
    status, _, headers = handle(plane_server, request("POST", "/topics/a", query=query, headers=signed_with_sigv4()))

    assert status == 400
    assert headers["x-amzn-ErrorType"] == "InvalidRequestException"
    assert published(plane_server, plane_watcher) == []


# --- routing ----------------------------------------------------------------------------


def test_an_unknown_path_is_404_and_a_wrong_method_405(plane_server):
    assert handle(plane_server, request("GET", "/nothing", headers=signed_with_sigv4()))[0] == 404
    status, _, headers = handle(plane_server, request("PUT", "/things/lamp/shadow", headers=signed_with_sigv4()))
    assert (status, headers["x-amzn-ErrorType"]) == (405, "MethodNotAllowedException")


def test_an_encoded_slash_stays_inside_the_thing_name(plane_server):
    status, body, headers = handle(plane_server, request("GET", "/things/dev%2Flamp/shadow",
                                                         headers=signed_with_sigv4()))

    assert (status, headers["x-amzn-ErrorType"], body["message"]) == (400, "InvalidRequestException",
                                                                      "Invalid thing name")


# --- connections ------------------------------------------------------------------------

SOCKET_INFORMATION = {"sourceIp", "sourcePort", "targetIp", "targetPort"}


def test_get_connection_tells_the_live_client_and_leaves_socket_information_out(plane_server, connect_app):
    connect_app(version=4, keepalive=45)

    _, plain, _ = handle(plane_server, request("GET", "/connections/app-1", headers=signed_with_sigv4()))

    assert (plain["clientId"], plain["connected"], plain["cleanSession"], plain["keepAliveDuration"]) == (
        "app-1", True, True, 45)
    assert not SOCKET_INFORMATION & plain.keys()


def test_get_connection_with_socket_information_names_both_ends(plane_server, connect_app):
    # includeSocketInformation=true adds sourceIp, sourcePort, targetIp, targetPort:
    # https://docs.aws.amazon.com/iot/latest/apireference/API_iotdata_GetConnection.html
    app = connect_app()

    _, full, _ = handle(plane_server, request("GET", "/connections/app-1", query="includeSocketInformation=true",
                                              headers=signed_with_sigv4()))

    _, plain, _ = handle(plane_server, request("GET", "/connections/app-1", headers=signed_with_sigv4()))

    source_ip, source_port = app.paho.socket().getsockname()[:2]
    target_ip = app.paho.socket().getpeername()[0]
    assert (full["sourceIp"], full["sourcePort"], full["targetIp"], full["targetPort"]) == (
        source_ip, source_port, target_ip, plane_server.port)
    assert {"sourceIp", "sourcePort", "targetIp", "targetPort"} & set(plain) == set()
    assert plain["connected"] is True


@pytest.mark.parametrize(("client_id", "status", "error"), [("nobody", 404, "ResourceNotFoundException"),
                                                            ("%24aws", 400, "InvalidRequestException"),
                                                            ("c" * 129, 400, "InvalidRequestException")])
def test_connection_lookups_that_fail(plane_server, client_id, status, error):
    for method in ("GET", "DELETE"):
        got, _, headers = handle(plane_server, request(method, f"/connections/{client_id}",
                                                       headers=signed_with_sigv4()))
        assert (got, headers["x-amzn-ErrorType"]) == (status, error)


@pytest.mark.parametrize(("query", "will_sent", "session_kept"), [
    ("cleanSession=true&preventWillMessage=false", True, False),
    ("cleanSession=false&preventWillMessage=true", False, True),
])
def test_delete_connection_passes_its_flags(plane_server, connect_app, plane_watcher, query, will_sent, session_kept):
    options = {"version": 4, "clean": False, "will": ("wills/app-1", b"gone", 1, False)}
    app = connect_app(**options)

    status, body, _ = handle(plane_server, request("DELETE", "/connections/app-1", query=query,
                                                   headers=signed_with_sigv4()))

    assert (status, body) == (200, None)
    app.wait_disconnected()
    will = Published("wills/app-1", b"gone", 1, False)
    assert published(plane_server, plane_watcher) == ([will] if will_sent else [])
    again = connect_app(**options)
    assert again.connack[1] is session_kept  # session present


# --- shadows ----------------------------------------------------------------------------


def test_a_rest_update_is_announced_on_the_shadow_topics(plane_server, plane_watcher):
    status, body, _ = handle(plane_server, request("POST", "/things/lamp/shadow", query="name=config",
                                                   headers=signed_with_sigv4(),
                                                   body=b'{"state": {"desired": {"rate": 5}}}'))

    assert status == 200
    assert body == {"state": {"desired": {"rate": 5}}, "metadata": {"desired": {"rate": {"timestamp": T}}},
                    "version": 1, "timestamp": T}
    prefix = "$aws/things/lamp/shadow/name/config/update"
    messages = published(plane_server, plane_watcher)
    assert [(p.topic, p.qos) for p in messages] == [
        (f"{prefix}/accepted", 1), (f"{prefix}/delta", 1), (f"{prefix}/documents", 1)]
    assert json.loads(messages[0].payload) == body


def test_a_rejected_rest_update_publishes_nothing(plane_server, plane_watcher):
    status, body, headers = handle(plane_server, request("POST", "/things/lamp/shadow", headers=signed_with_sigv4(),
                                                         body=b"{"))

    assert (status, headers["x-amzn-ErrorType"], body) == (400, "InvalidRequestException", {"message": "Invalid JSON"})
    assert published(plane_server, plane_watcher) == []


def test_a_rest_delete_is_announced_on_delete_accepted(plane_server, plane_watcher):
    handle(plane_server, request("POST", "/things/lamp/shadow", headers=signed_with_sigv4(),
                                 body=b'{"state": {"reported": {"a": 1}}}'))
    published(plane_server, plane_watcher)

    status, body, _ = handle(plane_server, request("DELETE", "/things/lamp/shadow", headers=signed_with_sigv4()))

    assert (status, body) == (200, {"version": 1, "timestamp": T})
    assert [(p.topic, json.loads(p.payload)) for p in published(plane_server, plane_watcher)] == [
        ("$aws/things/lamp/shadow/delete/accepted", {"version": 1, "timestamp": T})]
