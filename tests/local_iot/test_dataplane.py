"""The data plane's routing, callers and error shapes
(docs/local-iot.md#the-data-plane), through DataPlane.handle with Request
objects. The broker and the gateway are the recording stand-ins of
tests/support/iot_siblings.py until the parts are integrated; the shadow
service is the real one.
"""
import asyncio
import json
import uuid
from urllib.parse import quote, unquote

import pytest

from local_iot.dataplane import DataPlane
from local_iot.http import Request
from local_iot.shadow import Shadows
from tests.support.iot_siblings import ListedGrant, Published, RecordingBroker, TokenGateway

T = 1_700_000_000
SIGV4 = ("AWS4-HMAC-SHA256 Credential=AKIDLOCAL/20261201/eu-west-1/iotdata/aws4_request, "
         "SignedHeaders=host;x-amz-date, Signature=" + "ab" * 32)
AUTHORIZER = {"x-amz-customauthorizer-name": "devshare", "x-amz-customauthorizer-signature": "c2lnbmVk"}


@pytest.fixture
def broker():
    return RecordingBroker({"app-1": {"connected": True, "clientId": "app-1", "cleanSession": True,
                                      "sourceIp": "127.0.0.1", "sourcePort": 50000,
                                      "targetIp": "127.0.0.1", "targetPort": 8883}})


@pytest.fixture
def gateway():
    return TokenGateway("devshare-token", {
        "owner": ListedGrant(frozenset({("iot:Publish", "dev/lamp/in/cmd"), ("iot:Publish", "dev/lamp/in/state"),
                                        ("iot:RetainPublish", "dev/lamp/in/state")})),
        "sharee": ListedGrant(frozenset({("iot:Publish", "dev/lamp/in/cmd")})),
    })


@pytest.fixture
def plane(broker, gateway):
    return DataPlane(broker=broker, shadows=Shadows(clock=lambda: T), gateway=gateway)


def request(method, raw_path, *, query="", headers=None, body=b"", tls=True):
    return Request(method=method, path=unquote(raw_path), raw_path=raw_path, query_string=query,
                   headers=dict(headers or {}), body=body, tls=tls, server_name="localhost", source_ip="127.0.0.9")


def handle(plane, req):
    response = asyncio.run(plane.handle(req))
    return response.status, (json.loads(response.body) if response.body else None), response.headers


def signed(**headers):
    return {"authorization": SIGV4, **headers}


# --- HTTPS publish through the custom authorizer ----------------------------------------


def test_an_allowed_https_publish_is_passed_to_the_broker_and_answered_ok(plane, broker, gateway):
    status, body, _ = handle(plane, request("POST", "/topics/dev%2Flamp%2Fin%2Fcmd", query="qos=1",
                                            headers={**AUTHORIZER, "devshare-token": "owner"}, body=b'{"on":1}'))

    assert status == 200
    assert body["message"] == "OK"
    uuid.UUID(body["traceId"])
    assert broker.published == [Published("dev/lamp/in/cmd", b'{"on":1}', 1, False)]


def test_the_gateway_sees_the_request_as_an_http_presentation(plane, gateway):
    handle(plane, request("POST", "/topics/dev/lamp/in/cmd", query="x-amz-customauthorizer-name=devshare",
                          headers={"x-amz-customauthorizer-signature": "c2lnbmVk", "devshare-token": "owner"}))

    [(presented, connection_id)] = gateway.calls
    assert presented.protocol == "http"
    assert presented.tls is True
    assert presented.server_name == "localhost"
    assert presented.source_ip == "127.0.0.9"
    assert presented.query_string == "x-amz-customauthorizer-name=devshare"
    assert presented.headers == {"x-amz-customauthorizer-signature": "c2lnbmVk", "devshare-token": "owner"}
    assert presented.client_id is None and presented.username is None
    uuid.UUID(connection_id)


def test_the_authorizer_parameters_may_all_be_in_the_query_string(plane, broker):
    query = "x-amz-customauthorizer-name=devshare&x-amz-customauthorizer-signature=c2lnbmVk&devshare-token=sharee"
    status, body, _ = handle(plane, request("POST", "/topics/dev/lamp/in/cmd", query=query, body=b"x"))

    assert (status, body["message"]) == (200, "OK")
    assert broker.published == [Published("dev/lamp/in/cmd", b"x", 0, False)]


def test_a_token_the_gateway_refuses_is_401_and_nothing_is_published(plane, broker):
    status, body, _ = handle(plane, request("POST", "/topics/dev/lamp/in/cmd",
                                            headers={**AUTHORIZER, "devshare-token": "revoked"}))

    assert (status, body["message"]) == (401, "Unauthorized")
    uuid.UUID(body["traceId"])
    assert broker.published == []


def test_a_topic_outside_the_policy_is_403(plane, broker):
    status, body, _ = handle(plane, request("POST", "/topics/dev/other/in/cmd",
                                            headers={**AUTHORIZER, "devshare-token": "owner"}))

    assert (status, body["message"]) == (403, "Forbidden")
    assert broker.published == []


def test_a_retained_publish_also_needs_retain_publish(plane, broker):
    sharee = handle(plane, request("POST", "/topics/dev/lamp/in/cmd", query="retain=true",
                                   headers={**AUTHORIZER, "devshare-token": "sharee"}))
    owner = handle(plane, request("POST", "/topics/dev/lamp/in/state", query="retain=true&qos=1",
                                  headers={**AUTHORIZER, "devshare-token": "owner"}, body=b"s"))

    assert sharee[0] == 403
    assert owner[0] == 200
    assert broker.published == [Published("dev/lamp/in/state", b"s", 1, True)]


def test_https_publish_does_not_ask_for_iot_connect(plane, gateway):
    # The sharee's grant holds iot:Publish on one topic and nothing else.
    assert not any(action == "iot:Connect" for action, _ in gateway.grants["sharee"].allowed)

    status, _, _ = handle(plane, request("POST", "/topics/dev/lamp/in/cmd",
                                         headers={**AUTHORIZER, "devshare-token": "sharee"}))

    assert status == 200


@pytest.mark.parametrize(("method", "path"), [("GET", "/things/lamp/shadow"), ("POST", "/things/lamp/shadow"),
                                              ("GET", "/connections/app-1"), ("DELETE", "/connections/app-1")])
def test_the_custom_authorizer_only_publishes(plane, gateway, broker, method, path):
    status, body, headers = handle(plane, request(method, path, headers={**AUTHORIZER, "devshare-token": "owner"},
                                                  body=b'{"state": {"desired": {"a": 1}}}'))

    assert status == 403
    assert headers["x-amzn-ErrorType"] == "ForbiddenException"
    assert gateway.calls == []
    assert "app-1" in broker.connections


# --- callers without credentials --------------------------------------------------------


@pytest.mark.parametrize("authorization", [None, "Bearer abc", "AWS4-HMAC-SHA256 Credential=x",
                                           SIGV4.replace("aws4_request", "aws5_request")])
def test_a_request_without_sigv4_or_authorizer_parameters_is_403(plane, broker, authorization):
    headers = {} if authorization is None else {"authorization": authorization}
    status, body, response_headers = handle(plane, request("POST", "/topics/dev/lamp/in/cmd", headers=headers))

    assert status == 403
    assert response_headers["x-amzn-ErrorType"] == "ForbiddenException"
    assert body == {"message": "Missing Authentication Token"}
    assert broker.published == []


def test_a_presigned_url_counts_as_sigv4(plane, broker):
    query = ("X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKID%2F20261201%2Feu-west-1%2Fiotdata%2Faws4_request"
             "&X-Amz-Date=20261201T000000Z&X-Amz-SignedHeaders=host&X-Amz-Signature=" + "0" * 64)
    status, _, _ = handle(plane, request("POST", "/topics/a/b", query=query, body=b"p"))

    assert status == 200
    assert broker.published == [Published("a/b", b"p", 0, False)]


# --- publish's limits -------------------------------------------------------------------


@pytest.mark.parametrize(("topic", "status"), [
    ("a/+/c", 400), ("a/#", 400), ("/".join("a" * 9), 400), ("t" * 257, 400),
    ("/".join("a" * 8), 200), ("t" * 256, 200),
])
def test_topic_limits(plane, topic, status):
    assert handle(plane, request("POST", "/topics/" + quote(topic, safe=""), headers=signed()))[0] == status


@pytest.mark.parametrize(("size", "status"), [(128 * 1024, 200), (128 * 1024 + 1, 413)])
def test_payload_limit(plane, size, status):
    assert handle(plane, request("POST", "/topics/a", headers=signed(), body=b"x" * size))[0] == status


@pytest.mark.parametrize("query", ["qos=2", "qos=x", "retain=yes", "qos=-1"])
def test_bad_publish_parameters_are_invalid_requests(plane, broker, query):
    status, _, headers = handle(plane, request("POST", "/topics/a", query=query, headers=signed()))

    assert status == 400
    assert headers["x-amzn-ErrorType"] == "InvalidRequestException"
    assert broker.published == []


# --- routing ----------------------------------------------------------------------------


def test_an_unknown_path_is_404_and_a_wrong_method_405(plane):
    assert handle(plane, request("GET", "/nothing", headers=signed()))[0] == 404
    status, _, headers = handle(plane, request("PUT", "/things/lamp/shadow", headers=signed()))
    assert (status, headers["x-amzn-ErrorType"]) == (405, "MethodNotAllowedException")


def test_an_encoded_slash_stays_inside_the_thing_name(plane):
    status, body, headers = handle(plane, request("GET", "/things/dev%2Flamp/shadow", headers=signed()))

    assert (status, headers["x-amzn-ErrorType"], body["message"]) == (400, "InvalidRequestException",
                                                                      "Invalid thing name")


# --- connections ------------------------------------------------------------------------


def test_get_connection_leaves_socket_information_out_unless_asked(plane):
    _, plain, _ = handle(plane, request("GET", "/connections/app-1", headers=signed()))
    _, full, _ = handle(plane, request("GET", "/connections/app-1", query="includeSocketInformation=true",
                                       headers=signed()))

    assert plain == {"connected": True, "clientId": "app-1", "cleanSession": True}
    assert full["sourcePort"] == 50000 and full["targetPort"] == 8883


@pytest.mark.parametrize(("client_id", "status", "error"), [("nobody", 404, "ResourceNotFoundException"),
                                                            ("%24aws", 400, "InvalidRequestException"),
                                                            ("c" * 129, 400, "InvalidRequestException")])
def test_connection_lookups_that_fail(plane, client_id, status, error):
    for method in ("GET", "DELETE"):
        got, _, headers = handle(plane, request(method, f"/connections/{client_id}", headers=signed()))
        assert (got, headers["x-amzn-ErrorType"]) == (status, error)


def test_delete_connection_passes_its_flags(plane, broker):
    status, body, _ = handle(plane, request("DELETE", "/connections/app-1",
                                            query="cleanSession=true&preventWillMessage=false", headers=signed()))

    assert (status, body) == (200, None)
    assert broker.deleted == [("app-1", True, False)]


# --- shadows ----------------------------------------------------------------------------


def test_a_rest_update_is_announced_on_the_shadow_topics(plane, broker):
    status, body, _ = handle(plane, request("POST", "/things/lamp/shadow", query="name=config", headers=signed(),
                                            body=b'{"state": {"desired": {"rate": 5}}}'))

    assert status == 200
    assert body == {"state": {"desired": {"rate": 5}}, "metadata": {"desired": {"rate": {"timestamp": T}}},
                    "version": 1, "timestamp": T}
    prefix = "$aws/things/lamp/shadow/name/config/update"
    assert [(p.topic, p.qos) for p in broker.published] == [
        (f"{prefix}/accepted", 1), (f"{prefix}/delta", 1), (f"{prefix}/documents", 1)]
    assert json.loads(broker.published[0].payload) == body


def test_a_rejected_rest_update_publishes_nothing(plane, broker):
    status, body, headers = handle(plane, request("POST", "/things/lamp/shadow", headers=signed(), body=b"{"))

    assert (status, headers["x-amzn-ErrorType"], body) == (400, "InvalidRequestException", {"message": "Invalid JSON"})
    assert broker.published == []


def test_a_rest_delete_is_announced_on_delete_accepted(plane, broker):
    handle(plane, request("POST", "/things/lamp/shadow", headers=signed(), body=b'{"state": {"reported": {"a": 1}}}'))
    broker.published.clear()

    status, body, _ = handle(plane, request("DELETE", "/things/lamp/shadow", headers=signed()))

    assert (status, body) == (200, {"version": 1, "timestamp": T})
    assert [(p.topic, json.loads(p.payload)) for p in broker.published] == [
        ("$aws/things/lamp/shadow/delete/accepted", {"version": 1, "timestamp": T})]
