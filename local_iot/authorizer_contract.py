"""The custom-authorizer contract, as the AWS IoT gateway plays it: the pure
part, with no sockets, threads or clock (docs/local-iot.md#the-custom-authorizer-contract).

- `find_credentials`: where the authorizer's name, the token and its
  signature travel (the MQTT username's query string; HTTP headers, then the
  URL's query string);
- `gateway_verifies`: the signature check AWS makes before it invokes a
  signed authorizer;
- `build_event`: the event AWS sends the Lambda;
- `check_response`: the answer's contract; anything else is refused.

`local_iot/gateway.py` runs this for live connections (the one-at-a-time
invocation, the key reader, the Grant); `manage.py authorize`
(authz/tokens/simulator.py) builds its events with the same functions.

AWS's pages this follows:
https://docs.aws.amazon.com/iot/latest/developerguide/custom-auth.html (where
the parameters travel), .../custom-auth-lambda.html (the event and the
answer), .../config-custom-auth.html (signing).
"""
from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from typing import Mapping
from urllib.parse import parse_qs

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from lambda_bridge import evaluator, vocabulary
from lambda_bridge.config import MAX_TTL, MIN_TTL

AUTHORIZER_NAME = vocabulary.AUTHORIZER_NAME_PARAMETER
SIGNATURE = "x-amz-customauthorizer-signature"

# The response contract (custom-auth-lambda.html).
PRINCIPAL_ID = re.compile(r"[a-zA-Z0-9]{1,128}")
MAX_DOCUMENTS = 10
MAX_DOCUMENT_CHARS = 2048

# Parameters read from one query string at most (assumed; AWS does not say).
MAX_QUERY_FIELDS = 64

@dataclass(frozen=True)
class Presented:
    """What a client presented: an MQTT CONNECT, a WebSocket upgrade, an HTTPS publish."""

    protocol: str  # "mqtt" (CONNECT over TCP or TLS), "ws" (MQTT over a WebSocket), "http" (HTTPS publish)
    tls: bool
    # The TLS SNI host name, None without one. Only the SNI: AWS's event
    # carries it as tls.serverName ("the server name indication (SNI)
    # host_name string", custom-auth-lambda.html), never the Host header.
    server_name: str | None = None
    client_id: str | None = None  # MQTT CONNECT only
    username: str | None = None  # MQTT CONNECT only
    password: bytes | None = None  # MQTT CONNECT only, raw bytes
    headers: Mapping[str, str] = field(default_factory=dict)  # HTTP / upgrade request, names lower-case
    query_string: str = ""  # the request URL's, without "?"
    source_ip: str = ""
    # The socket's other numbers, for GetConnection's includeSocketInformation;
    # the authorizer's event carries none of them.
    source_port: int | None = None
    target_ip: str = ""
    target_port: int | None = None


class Refused(Exception):
    """The gateway will not let this client in (or keep it in)."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason, self.detail = reason, detail


class Reason:
    """Why the gateway refused (Refused.reason; docs/local-iot.md lists them).
    The Lambda's own refusal reasons are in its log line, not here: to the
    gateway they are all `not_authenticated`."""

    NO_AUTHORIZER_NAME = "no_authorizer_name"
    UNKNOWN_AUTHORIZER = "unknown_authorizer"
    REPEATED_PARAMETER = "repeated_parameter"
    BAD_QUERY_STRING = "bad_query_string"
    NO_TOKEN = "no_token"  # noqa: S105 - a reason, not a secret
    NO_SIGNATURE = "no_signature"
    BAD_SIGNATURE = "bad_signature"
    KEYS_UNAVAILABLE = "keys_unavailable"
    INVOKE_TIMEOUT = "invoke_timeout"
    INVOKE_THROTTLED = "invoke_throttled"
    INVOKE_FAILED = "invoke_failed"
    NOT_AUTHENTICATED = "not_authenticated"
    BAD_RESPONSE = "bad_response"


# --- where the credentials travel -------------------------------------------------------


@dataclass(frozen=True)
class Credentials:
    """The authorizer's parameters as one request carried them."""

    authorizer_name: str | None
    token: str | None
    signature: str | None


def find_credentials(presented: Presented, token_key_name: str) -> Credentials:
    """MQTT: the username's query string (after the first `?`). HTTPS: each
    parameter from a header if there is one, else from the URL's query string
    (custom-auth.html). WebSockets: the same, then the CONNECT's username, as
    for MQTT: AWS's own browser SDK puts them there (assumed order; AWS does
    not say which wins). A parameter given twice in one place is refused, even
    with the same value: a second token is a question the gateway should not
    guess the answer to (assumed; AWS does not say)."""
    names = (AUTHORIZER_NAME, token_key_name, SIGNATURE)
    places: list[Mapping[str, list[str]]] = []
    if presented.protocol in ("ws", "http"):
        headers: dict[str, list[str]] = {}
        for name, value in presented.headers.items():
            headers.setdefault(name.lower(), []).append(value)
        places += [{name: headers[name.lower()] for name in names if name.lower() in headers},
                   _query(presented.query_string)]
    if presented.protocol in ("ws", "mqtt"):
        username = presented.username or ""
        places.append(_query(username.split("?", 1)[1]) if "?" in username else {})
    found = []
    for name in names:
        values = (_one(place, name) for place in places)
        found.append(next((value for value in values if value is not None), None))
    return Credentials(*found)


def _query(text: str) -> dict[str, list[str]]:
    # parse_qs turns `+` into a space, as AWS does: an SDK that sends a base64
    # signature without URL-encoding it sees its signature fail (issue 14, 7a).
    try:
        return parse_qs(text, keep_blank_values=True, max_num_fields=MAX_QUERY_FIELDS)
    except ValueError:
        raise Refused(Reason.BAD_QUERY_STRING, f"more than {MAX_QUERY_FIELDS} parameters") from None


def _one(values: Mapping[str, list[str]], name: str) -> str | None:
    found = values.get(name)
    if not found:
        return None
    if len(found) > 1:
        raise Refused(Reason.REPEATED_PARAMETER, name if name in (AUTHORIZER_NAME, SIGNATURE) else "token key name")
    return found[0]


def gateway_verifies(token: str, signature: str, public_pems: list[str]) -> bool:
    """What the AWS IoT gateway checks before it invokes a signed authorizer:
    base64(RSA-SHA256(token)), PKCS#1 v1.5, under any of the authorizer's
    token-signing public keys (the live slots)."""
    try:
        raw = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):
        return False
    try:
        message = token.encode("ascii")
    except UnicodeEncodeError:
        return False
    for pem in public_pems:
        try:
            load_pem_public_key(pem.encode()).verify(raw, message, padding.PKCS1v15(), hashes.SHA256())
            return True
        except (InvalidSignature, ValueError, TypeError):
            continue
    return False


# --- the event -------------------------------------------------------------------------


def build_event(presented: Presented, *, connection_id: str, token: str | None,
                signature_verified: bool) -> dict:
    """The event AWS IoT Core sends the authorizer (custom-auth-lambda.html):
    fields that do not apply are left out; `tls.serverName` is there only
    when the client sent SNI (presented.server_name). `protocols` starts
    with "tls" only over TLS; AWS has no plain listener, so an event without
    "tls" is local only."""
    protocols = ["tls"] if presented.tls else []
    protocols += {"mqtt": ["mqtt"], "ws": ["http", "mqtt"], "http": ["http"]}[presented.protocol]
    data: dict = {}
    if presented.tls and presented.server_name:
        data["tls"] = {"serverName": presented.server_name}
    if presented.protocol in ("ws", "http"):
        data["http"] = {"headers": dict(presented.headers),
                        "queryString": f"?{presented.query_string}" if presented.query_string else ""}
    if presented.protocol in ("mqtt", "ws"):
        mqtt = {}
        if presented.username is not None:
            mqtt["username"] = presented.username
        if presented.password is not None:
            # AWS hands the password over base64-encoded (custom-auth.html, MQTT).
            mqtt["password"] = base64.b64encode(presented.password).decode("ascii")
        if presented.client_id is not None:
            mqtt["clientId"] = presented.client_id
        data["mqtt"] = mqtt
    event: dict = {}
    if token is not None:
        event["token"] = token
    event.update({"signatureVerified": signature_verified, "protocols": protocols, "protocolData": data,
                  "connectionMetadata": {"id": connection_id}})
    return event


# --- the answer ------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    principal_id: str
    documents: tuple[str, ...]
    refresh: int
    disconnect: int


def check_response(response) -> Answer:
    """The response contract (custom-auth-lambda.html). Anything else is a
    failed invocation, and AWS closes the connection on one."""
    if not isinstance(response, dict):
        raise Refused(Reason.BAD_RESPONSE, "the answer is not a JSON object")
    if type(response.get("isAuthenticated")) is not bool:
        raise Refused(Reason.BAD_RESPONSE, "isAuthenticated is not a boolean")
    if not response["isAuthenticated"]:
        raise Refused(Reason.NOT_AUTHENTICATED)
    principal = response.get("principalId")
    if not isinstance(principal, str) or not PRINCIPAL_ID.fullmatch(principal):
        raise Refused(Reason.BAD_RESPONSE, "principalId is not 1-128 letters and digits")
    documents = response.get("policyDocuments")
    if not isinstance(documents, list) or len(documents) > MAX_DOCUMENTS:
        raise Refused(Reason.BAD_RESPONSE, f"policyDocuments is not a list of at most {MAX_DOCUMENTS}")
    for number, document in enumerate(documents, 1):
        # Strings, as the Lambda answers; whether AWS also takes objects is not
        # documented, so they are refused here (assumed).
        if not isinstance(document, str) or len(document) > MAX_DOCUMENT_CHARS:
            raise Refused(Reason.BAD_RESPONSE, f"policy document {number} is not a string of at most "
                                               f"{MAX_DOCUMENT_CHARS} characters")
        try:
            evaluator.evaluate([document], "iot:Connect", "arn:aws:iot:::client/-")
        except evaluator.PolicyError as exc:
            raise Refused(Reason.BAD_RESPONSE, f"policy document {number}: {exc}"[:200]) from None
    ttls = []
    for name in ("refreshAfterInSeconds", "disconnectAfterInSeconds"):
        value = response.get(name)
        if type(value) is not int or not MIN_TTL <= value <= MAX_TTL:
            raise Refused(Reason.BAD_RESPONSE, f"{name} is not a whole number in {MIN_TTL}..{MAX_TTL}")
        ttls.append(value)
    return Answer(principal, tuple(documents), *ttls)
