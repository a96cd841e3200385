"""The data plane on the HTTPS listener (docs/local-iot.md#the-data-plane):
HTTPS publish by a device or app through the custom authorizer, and the
AWS `iot-data` API as boto3 calls it with `endpoint_url`.

Two kinds of caller share the paths:
- a request carrying any of the custom authorizer's parameters (its name,
  the token key or the signature, in headers or the query string) goes
  through the gateway, always, whatever else it carries, and may only
  publish; the custom authorizer "for the HTTPS protocol only supports
  publish operations"
  (https://docs.aws.amazon.com/iot/latest/developerguide/custom-auth.html);
- any other request must be signed with Signature Version 4 under the one
  local access key id (`--access-key-id`, default "local"). This stand-in
  has no IAM and no secret keys: the signature's shape and the key id are
  checked, not the signature itself, and every operation is allowed (as
  moto does, but with one key id, so a stray client is not let in).
One with neither is refused with 403.

Routes, parameters and error shapes follow botocore's `iot-data` service
model (rest-json: the error type in `x-amzn-ErrorType`, the text in the
body's `message`), so boto3 raises its modelled exceptions:
https://docs.aws.amazon.com/iot/latest/apireference/API_Operations_AWS_IoT_Data_Plane.html
"""
from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import parse_qs, unquote

from local_iot import topics
from local_iot.authorizer_contract import AUTHORIZER_NAME, SIGNATURE
from local_iot.gateway import Presented, Refused
from local_iot.http import Request, Response
from local_iot.limits import MAX_PAYLOAD
from local_iot.shadow import ShadowError, encode, parse_payload

# The access key id an iot-data caller signs with (docs/local-iot.md#the-data-plane).
DEFAULT_ACCESS_KEY_ID = "local"

_SIGV4_HEADER = re.compile(
    r"AWS4-HMAC-SHA256 +Credential=(?P<key>[^/\s,]+)/\d{8}/[^/\s,]+/[^/\s,]+/aws4_request, *"
    r"SignedHeaders=[a-z0-9;._-]+, *Signature=[0-9a-f]{64}")
_SIGV4_QUERY = ("X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Signature")

# A shadow error's HTTP code → the iot-data exception boto3 raises for it.
_SHADOW_ERRORS = {400: "InvalidRequestException", 401: "UnauthorizedException", 404: "ResourceNotFoundException",
                  409: "ConflictException", 413: "RequestEntityTooLargeException",
                  415: "UnsupportedDocumentEncodingException", 429: "ThrottlingException"}


class _Failure(Exception):
    """A request answered with an error; `response` is that answer."""

    def __init__(self, response: Response):
        super().__init__(response.status)
        self.response = response


def _error(status: int, error_type: str, message: str) -> _Failure:
    return _Failure(_json(status, {"message": message}, {"x-amzn-ErrorType": error_type}))


def _json(status: int, body: dict | bytes, headers: dict | None = None) -> Response:
    return Response(status, body if isinstance(body, bytes) else encode(body),
                    {"content-type": "application/json", "x-amzn-RequestId": str(uuid.uuid4()), **(headers or {})})


def _traced(status: int, message: str) -> Response:
    """HTTPS publish's own answer: {"message": ..., "traceId": ...}."""
    return _json(status, {"message": message, "traceId": str(uuid.uuid4())})


class DataPlane:
    def __init__(self, *, broker, shadows, gateway, access_key_id: str = DEFAULT_ACCESS_KEY_ID):
        self._broker, self._shadows, self._gateway = broker, shadows, gateway
        self.access_key_id = access_key_id

    async def handle(self, request: Request) -> Response:
        query = parse_qs(request.query_string, keep_blank_values=True)
        try:
            operation, argument = _route(request)
            # The authorizer's parameters come first: a SigV4 header beside
            # them must not let a request skip the authorizer.
            if self._carries_authorizer_parameters(request, query):
                if operation != "publish":
                    raise _error(403, "ForbiddenException", "Forbidden")
                return await self._publish_with_authorizer(request, argument, query)
            key_id = _sigv4_access_key_id(request, query)
            if key_id is not None:
                if key_id != self.access_key_id:
                    # What AWS answers an unknown access key (assumed for this API).
                    raise _error(403, "UnrecognizedClientException",
                                 "The security token included in the request is invalid.")
                operations = {"publish": self._publish, "get_connection": self._get_connection,
                              "delete_connection": self._delete_connection,
                              "get_thing_shadow": self._get_thing_shadow,
                              "update_thing_shadow": self._update_thing_shadow,
                              "delete_thing_shadow": self._delete_thing_shadow,
                              "list_named_shadows_for_thing": self._list_named_shadows_for_thing}
                return await operations[operation](request, argument, query)
            raise _error(403, "ForbiddenException", "Missing Authentication Token")
        except _Failure as failure:
            return failure.response

    def _carries_authorizer_parameters(self, request: Request, query: dict) -> bool:
        names = (AUTHORIZER_NAME, SIGNATURE, self._gateway.token_key_name)
        return any(name.lower() in request.headers or name in query for name in names)

    # --- publish ------------------------------------------------------------------------

    async def _publish_with_authorizer(self, request: Request, topic: str, query: dict) -> Response:
        """HTTPS publish through the custom authorizer (the `curl` of the
        seeds). No MQTT CONNECT happens, so only iot:Publish (and
        iot:RetainPublish for a retained message) is checked, not iot:Connect
        (https://docs.aws.amazon.com/iot/latest/developerguide/iot-policy-actions.html)."""
        qos, retain = _publish_options(query)
        _check_topic(topic)
        _check_payload(request.body)
        presented = Presented(protocol="http", tls=request.tls, server_name=request.server_name,
                              headers=request.headers, query_string=request.query_string,
                              source_ip=request.source_ip)
        try:
            grant = await self._gateway.authorize(presented, connection_id=str(uuid.uuid4()))
        except Refused:
            return _traced(401, "Unauthorized")
        if not grant.can("iot:Publish", topic) or (retain and not grant.can("iot:RetainPublish", topic)):
            return _traced(403, "Forbidden")
        await self._broker.publish(topic, request.body, qos=qos, retain=retain)
        return _traced(200, "OK")

    async def _publish(self, request: Request, topic: str, query: dict) -> Response:
        """iot-data Publish. The MQTT 5 properties boto3 may send
        (x-amz-mqtt5-* headers, contentType, responseTopic, messageExpiry)
        are not passed on: Broker.publish takes none."""
        qos, retain = _publish_options(query)
        _check_topic(topic)
        _check_payload(request.body)
        await self._broker.publish(topic, request.body, qos=qos, retain=retain)
        return _traced(200, "OK")

    # --- connections --------------------------------------------------------------------

    async def _get_connection(self, request: Request, client_id: str, query: dict) -> Response:
        _check_client_id(client_id)
        connection = self._broker.get_connection(client_id)
        if connection is None:
            raise _error(404, "ResourceNotFoundException", f"No connection found for client ID: {client_id}")
        if not _boolean(query, "includeSocketInformation"):
            connection = {key: value for key, value in connection.items()
                          if key not in ("sourceIp", "sourcePort", "targetIp", "targetPort")}
        return _json(200, connection)

    async def _delete_connection(self, request: Request, client_id: str, query: dict) -> Response:
        _check_client_id(client_id)
        deleted = await self._broker.delete_connection(
            client_id, clean_session=_boolean(query, "cleanSession"),
            prevent_will=_boolean(query, "preventWillMessage"))
        if not deleted:
            raise _error(404, "ResourceNotFoundException", f"No connection found for client ID: {client_id}")
        return Response(200, b"", {"x-amzn-RequestId": str(uuid.uuid4())})

    # --- shadows ------------------------------------------------------------------------

    async def _get_thing_shadow(self, request: Request, thing: str, query: dict) -> Response:
        with _shadow_errors():
            document = self._shadows.get(thing, _single(query, "name"))
        return _json(200, document)

    async def _update_thing_shadow(self, request: Request, thing: str, query: dict) -> Response:
        with _shadow_errors():
            accepted, messages = self._shadows.update(thing, _single(query, "name"), parse_payload(request.body))
        await self._publish_answers(messages)
        return _json(200, accepted)

    async def _delete_thing_shadow(self, request: Request, thing: str, query: dict) -> Response:
        with _shadow_errors():
            deleted, messages = self._shadows.delete(thing, _single(query, "name"))
        await self._publish_answers(messages)
        return _json(200, deleted)

    async def _list_named_shadows_for_thing(self, request: Request, thing: str, query: dict) -> Response:
        page_size = _integer(query, "pageSize", default=25, low=1, high=100)
        start = _integer(query, "nextToken", default=0, low=0, high=2**31)  # our tokens are offsets
        with _shadow_errors():
            names = self._shadows.names(thing)
        body: dict = {"results": names[start:start + page_size], "timestamp": self._shadows.now()}
        if start + page_size < len(names):
            body["nextToken"] = str(start + page_size)
        return _json(200, body)

    async def _publish_answers(self, messages: list[tuple[str, bytes]]) -> None:
        # A REST update is also announced on the shadow's MQTT topics;
        # a REST error is not (device-shadow-error-messages.html).
        for topic, payload in messages:
            await self._broker.publish(topic, payload, qos=1)


# --- routing and parameters -----------------------------------------------------------

_ROUTES = (
    (re.compile(r"/topics/(.+)"), {"POST": "publish"}),
    (re.compile(r"/connections/([^/]+)"), {"GET": "get_connection", "DELETE": "delete_connection"}),
    (re.compile(r"/things/([^/]+)/shadow"), {"GET": "get_thing_shadow", "POST": "update_thing_shadow",
                                             "DELETE": "delete_thing_shadow"}),
    (re.compile(r"/api/things/shadow/ListNamedShadowsForThing/([^/]+)"), {"GET": "list_named_shadows_for_thing"}),
)


def _route(request: Request) -> tuple[str, str]:
    """(operation, its path parameter, percent-decoded). Matched on the raw
    path so that an encoded "/" inside a parameter stays inside it."""
    raw_path = request.raw_path.split("?", 1)[0]
    for pattern, methods in _ROUTES:
        match = pattern.fullmatch(raw_path)
        if match:
            if request.method not in methods:
                raise _error(405, "MethodNotAllowedException", f"Method {request.method} is not allowed here")
            return methods[request.method], unquote(match.group(1))
    raise _error(404, "ResourceNotFoundException", "Not Found")


def _sigv4_access_key_id(request: Request, query: dict) -> str | None:
    """The access key id of a SigV4-shaped request (Authorization header or
    presigned query string), else None."""
    header = _SIGV4_HEADER.match(request.headers.get("authorization", ""))
    if header:
        return header["key"]
    if _single(query, "X-Amz-Algorithm") == "AWS4-HMAC-SHA256" and all(name in query for name in _SIGV4_QUERY):
        return _single(query, "X-Amz-Credential").split("/", 1)[0]
    return None


def _single(query: dict, name: str) -> str | None:
    values = query.get(name)
    return values[0] if values else None


def _boolean(query: dict, name: str) -> bool:
    value = _single(query, name)
    if value is None:
        return False
    if value not in ("true", "false"):
        raise _error(400, "InvalidRequestException", f"Invalid value for {name}: {value}")
    return value == "true"


def _integer(query: dict, name: str, *, default: int, low: int, high: int) -> int:
    value = _single(query, name)
    if value is None:
        return default
    if not value.isdigit() or not low <= int(value) <= high:
        raise _error(400, "InvalidRequestException", f"Invalid value for {name}: {value}")
    return int(value)


def _publish_options(query: dict) -> tuple[int, bool]:
    qos = _integer(query, "qos", default=0, low=0, high=1)
    return qos, _boolean(query, "retain")


def _check_topic(topic: str) -> None:
    # The broker's rules (local_iot/topics.py: AWS's limits, the Basic Ingest
    # exemption); the message text is ours (assumed).
    problem = topics.name_problem(topic)
    if problem:
        raise _error(400, "InvalidRequestException", f"Invalid topic: {problem}")


def _check_payload(payload: bytes) -> None:
    if len(payload) > MAX_PAYLOAD:
        raise _error(413, "RequestEntityTooLargeException", "The payload exceeds the maximum size allowed")


def _check_client_id(client_id: str) -> None:
    # The service model's constraint on clientId: 1 to 128 characters, not starting with "$".
    if not 1 <= len(client_id) <= 128 or client_id.startswith("$"):
        raise _error(400, "InvalidRequestException", f"Invalid client ID: {client_id}")


@contextmanager
def _shadow_errors() -> Iterator[None]:
    """Turns a ShadowError into the iot-data error of the same HTTP code."""
    try:
        yield
    except ShadowError as error:
        raise _error(error.code, _SHADOW_ERRORS.get(error.code, "InternalFailureException"), error.message) from None
