"""HTTP/1.1 on the TLS and HTTP listeners: requests reach the data plane as
`local_iot.http.Request`, within limits, with keep-alive
(docs/local-iot.md#listeners). Clients: http.client and raw sockets."""
import http.client
import json
import socket

import pytest

from local_iot import http1
from local_iot.http import Response
from tests.support.local_iot import ProbeBroker, RunningListeners


class RecordingPlane:
    """Answers every request 200 with a body naming it, and keeps the requests."""

    def __init__(self):
        self.requests = []

    async def handle(self, request):
        self.requests.append(request)
        body = json.dumps({"seen": request.path}).encode()
        return Response(200, body, {"content-type": "application/json", "x-amzn-requestid": "r-1"})


@pytest.fixture
def plane():
    return RecordingPlane()


@pytest.fixture
def running(plane, certificates):
    started = RunningListeners(ProbeBroker(), dataplane=plane, certificates=certificates)
    yield started
    started.stop()


def raw_exchange(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        raw.sendall(data)
        received = b""
        while chunk := raw.recv(65536):
            received += chunk
        return received


def test_an_https_publish_reaches_the_data_plane_as_sent(running, plane, certificates):
    connection = http.client.HTTPSConnection("localhost", running.ports["tls"], timeout=10,
                                             context=certificates.client_context())
    connection.request("POST", "/topics/dev%2Fd-lamp%2Fin?qos=1", body=b'{"on": true}',
                       headers={"x-amz-customauthorizer-name": "devshare", "Devshare-Token": "a.b.c"})
    response = connection.getresponse()
    assert response.status == 200 and json.loads(response.read()) == {"seen": "/topics/dev/d-lamp/in"}
    assert response.getheader("x-amzn-requestid") == "r-1"
    (request,) = plane.requests
    assert (request.method, request.raw_path, request.query_string) == ("POST", "/topics/dev%2Fd-lamp%2Fin", "qos=1")
    assert request.body == b'{"on": true}'
    assert request.headers["devshare-token"] == "a.b.c" and request.headers["content-length"] == "12"
    assert (request.tls, request.server_name, request.source_ip) == (True, "localhost", "127.0.0.1")


def test_tls_with_alpn_http_is_http(running, plane, certificates):
    connection = http.client.HTTPSConnection("localhost", running.ports["tls"], timeout=10,
                                             context=certificates.client_context(["http/1.1"]))
    connection.request("GET", "/things/lamp/shadow")
    assert connection.getresponse().status == 200
    assert plane.requests[0].path == "/things/lamp/shadow"


def test_keep_alive_serves_several_requests_on_one_connection(running, plane):
    connection = http.client.HTTPConnection("127.0.0.1", running.ports["http"], timeout=10)
    connection.request("GET", "/one")
    first = connection.getresponse()
    first.read()
    sock = connection.sock
    connection.request("GET", "/two", headers={"Host": "iot.devshare.localhost:18080"})
    second = connection.getresponse()
    second.read()
    assert connection.sock is sock and first.getheader("connection") == "keep-alive"
    assert [r.path for r in plane.requests] == ["/one", "/two"]
    assert plane.requests[1].server_name is None  # plain HTTP: no SNI, and the Host header does not stand in


def test_connection_close_is_honoured(running):
    received = raw_exchange(running.ports["http"], b"GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert received.startswith(b"HTTP/1.1 200 OK\r\n") and b"Connection: close\r\n" in received


def test_expect_100_continue_gets_its_interim_answer(running, plane):
    with socket.create_connection(("127.0.0.1", running.ports["http"]), timeout=10) as raw:
        raw.sendall(b"POST /topics/t HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n")
        assert raw.recv(25) == b"HTTP/1.1 100 Continue\r\n\r\n"
        raw.sendall(b"abc")
        assert raw.recv(4096).startswith(b"HTTP/1.1 200")
    assert plane.requests[0].body == b"abc"


@pytest.mark.parametrize(("request_bytes", "status"), [
    (b"GET /x HTTP/1.1\r\nHost: a\r\nX-Big: " + b"a" * http1.MAX_HEAD + b"\r\n\r\n", b"431"),
    (b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % (http1.MAX_BODY + 1), b"413"),
    (b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", b"501"),
    (b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", b"400"),
    (b"NONSENSE\r\n\r\n", b"400"),
    (b"GET http://elsewhere/x HTTP/1.1\r\nHost: a\r\n\r\n", b"400"),
    (b"GET /x HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n", b"400"),
], ids=["head too large", "body too large", "chunked", "negative length", "no request line", "absolute form",
        "folded header"])
def test_requests_outside_the_limits_are_answered_and_closed(running, plane, request_bytes, status):
    received = raw_exchange(running.ports["http"], request_bytes)
    assert received.split(b" ", 2)[1] == status
    assert b"Connection: close\r\n" in received
    assert plane.requests == []


def test_without_a_data_plane_every_request_is_not_found(certificates):
    started = RunningListeners(ProbeBroker(), certificates=certificates)
    try:
        received = raw_exchange(started.ports["http"], b"GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    finally:
        started.stop()
    assert received.startswith(b"HTTP/1.1 404 Not Found\r\n")
    assert json.loads(received.split(b"\r\n\r\n", 1)[1]) == {"message": "Not Found"}


class BrokenPlane:
    async def handle(self, request):
        raise RuntimeError("a bug in the data plane")


def test_a_data_plane_failure_is_a_500_and_the_listener_keeps_serving(certificates, plane):
    started = RunningListeners(ProbeBroker(), dataplane=BrokenPlane(), certificates=certificates)
    try:
        first = raw_exchange(started.ports["http"], b"GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        second = raw_exchange(started.ports["http"], b"GET /y HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    finally:
        started.stop()
    assert first.startswith(b"HTTP/1.1 500 ") and second.startswith(b"HTTP/1.1 500 ")
    assert json.loads(first.split(b"\r\n\r\n", 1)[1]) == {"message": "Internal failure"}
