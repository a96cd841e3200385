"""The custom-authorizer contract, as the AWS IoT gateway plays it
(docs/local-iot.md#the-custom-authorizer-contract).

For every connection (and every HTTPS publish) the gateway:

1. finds the authorizer's name, the token and its signature where AWS looks
   for them: the MQTT username's query string, or the HTTP headers, then the
   URL's query string (`find_credentials`);
2. with signing on, verifies the signature against the authorizer's
   token-signing public keys before the Lambda runs (`gateway_verifies`);
3. builds the event AWS sends (`build_event`);
4. invokes the handler one call at a time, with a 5 s timeout;
5. holds the answer to the response contract and turns it into a `Grant`.

AWS's pages this follows:
https://docs.aws.amazon.com/iot/latest/developerguide/custom-auth.html (where
the parameters travel), .../custom-auth-lambda.html (the event and the
answer), .../config-custom-auth.html (signing, the 5 s limit).
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import io
import json
import logging
import re
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from typing import Callable, Mapping
from urllib.parse import parse_qs

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from lambda_bridge import evaluator, keys
from lambda_bridge.config import MAX_TTL, MIN_TTL, Config, ConfigError
from lambda_bridge.store import DynamoStore

log = logging.getLogger("local_iot.gateway")

AUTHORIZER_NAME = "x-amz-customauthorizer-name"
SIGNATURE = "x-amz-customauthorizer-signature"

# The response contract (custom-auth-lambda.html).
PRINCIPAL_ID = re.compile(r"[a-zA-Z0-9]{1,128}")
MAX_DOCUMENTS = 10
MAX_DOCUMENT_CHARS = 2048

# Parameters read from one query string at most (assumed; AWS does not say).
MAX_QUERY_FIELDS = 64

# How long the token-signing keys read from the key item are trusted. AWS
# reads an authorizer's keys from its own configuration; locally they are the
# key item, and a rotation test must see a new key at once: one second.
KEY_CACHE_SECONDS = 1.0


@dataclass(frozen=True)
class Presented:
    """What a client presented: an MQTT CONNECT, a WebSocket upgrade, an HTTPS publish."""

    protocol: str  # "mqtt" (CONNECT over TCP or TLS), "ws" (MQTT over a WebSocket), "http" (HTTPS publish)
    tls: bool
    server_name: str | None = None  # TLS SNI, else the Host header's name
    client_id: str | None = None  # MQTT CONNECT only
    username: str | None = None  # MQTT CONNECT only
    password: bytes | None = None  # MQTT CONNECT only, raw bytes
    headers: Mapping[str, str] = field(default_factory=dict)  # HTTP / upgrade request, names lower-case
    query_string: str = ""  # the request URL's, without "?"
    source_ip: str = ""


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
    INVOKE_FAILED = "invoke_failed"
    NOT_AUTHENTICATED = "not_authenticated"
    BAD_RESPONSE = "bad_response"


@dataclass(frozen=True)
class Grant:
    """An accepted authorizer answer: what this connection may do, and for how long."""

    principal_id: str
    documents: tuple[str, ...]
    refresh_in: float  # seconds of real time (already scaled) until the gateway asks again
    disconnect_in: float  # seconds of real time (already scaled) until the connection is closed
    region: str  # where the policy ARNs point: arn:aws:iot:{region}:{account}:...
    account: str
    # The MQTT client id iot:Connect is judged on; None for an HTTPS publish,
    # which has no client id and so no Connect to require (docs/local-iot.md#the-data-plane).
    client_id: str | None

    @cached_property
    def _judge(self) -> evaluator.Connection | None:
        # Built once per grant, so a PUBLISH or a delivery never re-parses policy JSON.
        try:
            return evaluator.Connection(self.documents, self.region, self.account, self.client_id or "")
        except evaluator.PolicyError:
            # AWS refuses an authorizer answer whose policy it cannot parse; a grant
            # that slipped through anyway allows nothing.
            return None

    def can(self, action: str, name: str) -> bool:
        """iot:Connect (name = client id), iot:Publish, iot:RetainPublish,
        iot:Receive (name = topic), iot:Subscribe (name = topic filter).
        As the broker judges it: explicit Deny wins, and anything but
        iot:Connect also needs iot:Connect on this grant's client id."""
        judge = self._judge
        if judge is None:
            return False
        if self.client_id is None:
            if action.lower() == "iot:retainpublish" and judge.decide("iot:Publish", name) != "allow":
                return False
            return judge.decide(action, name) == "allow"
        return judge.can(action, name)


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
    fields that do not apply are left out. `protocols` starts with "tls" only
    over TLS; AWS has no plain listener, so an event without "tls" is local
    only."""
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


# --- the gateway -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Context:
    """The part of the Lambda context object the handler reads."""

    aws_request_id: str


class Gateway:
    def __init__(self, *, lambda_env: Mapping[str, str], authorizer_name: str, token_key_name: str,
                 signing: bool = True, time_scale: float = 1.0, invoke_timeout: float = 5.0, handler=None):
        self.lambda_env = dict(lambda_env)
        self.authorizer_name, self.token_key_name = authorizer_name, token_key_name
        self.signing, self.time_scale, self.invoke_timeout = signing, time_scale, invoke_timeout
        # The region and account policy ARNs name; a Lambda environment that
        # does not parse still starts (the handler then refuses everyone).
        try:
            config = Config.from_env(self.lambda_env)
        except ConfigError:
            config = None
        self.region = config.region if config else ""
        self.account = config.account if config else ""
        self._keys = _KeyReader(config, self.lambda_env) if signing else None
        # Built once, here, like a Lambda's cold start; a bad setting is logged
        # by the handler now and every connection is refused until it is fixed.
        self._handler: Callable = handler if handler is not None else _build_handler(self.lambda_env)
        # One invocation at a time, like a Lambda with one instance: decisions
        # come in a fixed order, and the handler's caches see one thread.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="local_iot-authorizer")
        self._turn = asyncio.Lock()

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def authorize(self, presented: Presented, *, connection_id: str) -> Grant:
        """Signature check, event, one invocation of the handler (serially,
        with the timeout), response contract. Raises Refused."""
        started = time.perf_counter()
        record = {"event": "gateway", "connection": connection_id, "protocol": presented.protocol,
                  "tls": presented.tls, "client_id": presented.client_id, "source_ip": presented.source_ip}
        try:
            grant = await self._authorize(presented, connection_id)
        except Refused as refusal:
            record.update(decision="deny", reason=refusal.reason, detail=refusal.detail or None)
            raise
        else:
            record.update(decision="allow", reason="ok", principal=grant.principal_id,
                          documents=len(grant.documents), refresh_in=grant.refresh_in,
                          disconnect_in=grant.disconnect_in)
            return grant
        finally:
            record["elapsed_ms"] = round((time.perf_counter() - started) * 1000, 2)
            # Never the token, signature, username or password: they are credentials.
            log.info(json.dumps(record, separators=(",", ":")))

    async def _authorize(self, presented: Presented, connection_id: str) -> Grant:
        found = find_credentials(presented, self.token_key_name)
        if found.authorizer_name is None:
            # Devshare's stack sets no default authorizer, so AWS would fall
            # back to certificates, which local_iot does not offer (assumed).
            raise Refused(Reason.NO_AUTHORIZER_NAME)
        if found.authorizer_name != self.authorizer_name:
            raise Refused(Reason.UNKNOWN_AUTHORIZER, found.authorizer_name[:128])
        verified = False
        if self.signing:
            if not found.token:
                raise Refused(Reason.NO_TOKEN)
            if not found.signature:
                raise Refused(Reason.NO_SIGNATURE)
            pems = await self._keys.public_pems()
            if not gateway_verifies(found.token, found.signature, pems):
                raise Refused(Reason.BAD_SIGNATURE)
            verified = True
        event = build_event(presented, connection_id=connection_id, token=found.token or None,
                            signature_verified=verified)
        answer = check_response(await self._invoke(event))
        return Grant(principal_id=answer.principal_id, documents=answer.documents,
                     refresh_in=answer.refresh * self.time_scale, disconnect_in=answer.disconnect * self.time_scale,
                     region=self.region, account=self.account, client_id=presented.client_id)

    async def _invoke(self, event: dict):
        loop = asyncio.get_running_loop()
        async with self._turn:
            call = loop.run_in_executor(self._executor, self._call, event)
            try:
                return await asyncio.wait_for(call, self.invoke_timeout)
            except TimeoutError:
                # AWS gives the Lambda 5 s (config-custom-auth.html) and closes
                # the connection after. The call itself runs on; the next one
                # waits for it, as a Lambda with one instance would.
                raise Refused(Reason.INVOKE_TIMEOUT, f"no answer in {self.invoke_timeout:g} s") from None
            except Exception as exc:  # noqa: BLE001  (a failed invocation: AWS refuses)
                raise Refused(Reason.INVOKE_FAILED, exc.__class__.__name__) from None

    def _call(self, event: dict):
        return self._handler(event, _Context(aws_request_id=str(uuid.uuid4())))


def _build_handler(env: Mapping[str, str]):
    """lambda_bridge.handler.build(env). Importing that module also starts a
    handler from this process's own environment, as the Lambda runtime would;
    what that one prints is about the shell, not `env`, so it is dropped."""
    with contextlib.redirect_stdout(io.StringIO()):
        from lambda_bridge.handler import build
    return build(env)


class _KeyReader:
    """The authorizer's token-signing public keys, read from the key item with
    the Lambda's own store settings and kept for KEY_CACHE_SECONDS."""

    def __init__(self, config: Config | None, env: Mapping[str, str]):
        # The client is made here, in the starting thread: boto3's default
        # session is not safe to make clients from in several threads.
        self._store: DynamoStore | None = None
        self._unusable = "the Lambda's settings do not parse" if config is None else ""
        if config is not None:
            try:
                self._store = DynamoStore.from_config(config, credentials=_credentials(env))
            except Exception as exc:  # noqa: BLE001  (e.g. botocore refusing the endpoint URL)
                self._unusable = f"{exc.__class__.__name__} making the DynamoDB client"
        self._pems: list[str] = []
        self._read_at = float("-inf")
        self._reading = asyncio.Lock()

    async def public_pems(self) -> list[str]:
        async with self._reading:
            if time.monotonic() - self._read_at > KEY_CACHE_SECONDS:
                self._pems = await asyncio.to_thread(self._read)
                self._read_at = time.monotonic()
            return self._pems

    def _read(self) -> list[str]:
        if self._store is None:
            raise Refused(Reason.KEYS_UNAVAILABLE, self._unusable)
        try:
            item = self._store.get(keys.ITEM_KEY)
        except Exception as exc:  # noqa: BLE001  (network, missing table, permissions)
            raise Refused(Reason.KEYS_UNAVAILABLE, exc.__class__.__name__) from None
        if item is None:
            raise Refused(Reason.KEYS_UNAVAILABLE, "no key item")
        try:
            return list(keys.from_item(item).verifying().values())
        except keys.KeyringError as exc:
            raise Refused(Reason.KEYS_UNAVAILABLE, str(exc)[:200]) from None


def _credentials(env: Mapping[str, str]) -> dict[str, str | None]:
    # As lambda_bridge.handler reads them: the keys in env, else boto3's chain.
    if env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
        return {"aws_access_key_id": env["AWS_ACCESS_KEY_ID"], "aws_secret_access_key": env["AWS_SECRET_ACCESS_KEY"],
                "aws_session_token": env.get("AWS_SESSION_TOKEN") or None}
    return {}
