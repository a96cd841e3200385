"""The AWS IoT gateway's side of a custom-authorizer call, played locally:
the Lambda's environment, the gateway's signature check, the event it sends,
one invocation of the real handler, and the verdict on one action under the
policies it answered with (docs/authorizer.md).

Plain values in, plain values out, and no Django: `manage.py authorize` feeds
it from Django's settings. The signature check and the event are local_iot's
contract (local_iot/authorizer_contract.py), so the command and a live connection
to `make run` send the Lambda the same event.
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime

from lambda_bridge import evaluator
from lambda_bridge.vocabulary import COMPACT_CREDENTIAL, SIGNED_CREDENTIAL, Reason
from local_iot.authorizer_contract import Presented, build_event, gateway_verifies

__all__ = ["ACTIONS", "COMPACT_VIAS", "LambdaContext", "Report", "Token", "compact_event", "connection_event",
           "gateway_verifies", "invoke", "lambda_environment"]

ACTIONS = {"connect": "iot:Connect", "publish": "iot:Publish", "subscribe": "iot:Subscribe", "receive": "iot:Receive"}


def lambda_environment(*, table: str, issuer: str, audience: str, token_key_name: str, account: str,
                       region: str, iot_region: str, endpoint_url: str | None, access_key_id: str | None = None,
                       secret_access_key: str | None = None) -> dict[str, str]:
    """The Lambda's settings (docs/authorizer.md) and nothing else: any other
    DEVSHARE_* left in a shell (a leeway, a refresh) would make the verdict
    differ from the deployed Lambda's."""
    env = {
        "DEVSHARE_TABLE": table,
        "DEVSHARE_TOKEN_ISSUER": issuer,
        "DEVSHARE_TOKEN_AUDIENCE": audience,
        "DEVSHARE_TOKEN_KEY_NAME": token_key_name,
        "DEVSHARE_AWS_ACCOUNT_ID": account,
        "AWS_REGION": region,
        "DEVSHARE_IOT_REGION": iot_region,
        # Empty means real DynamoDB, also over an endpoint left in the shell.
        "DEVSHARE_DYNAMODB_ENDPOINT_URL": endpoint_url or "",
    }
    if access_key_id and secret_access_key:
        env["AWS_ACCESS_KEY_ID"] = access_key_id
        env["AWS_SECRET_ACCESS_KEY"] = secret_access_key
    return {name: str(value) for name, value in env.items()}


def connection_event(*, endpoint: str, via: str, client_id: str, token: str, mqtt_username: str = "",
                     query_string: str = "") -> dict:
    """The event AWS IoT Core sends a signed custom authorizer for one
    connection, built by local_iot's gateway. The caller has checked the
    signature (`gateway_verifies`), so the gateway hands over the token it
    found and `signatureVerified` is true, over either protocol. `via` "mqtt":
    MQTT over TLS, the parameters in `mqtt_username`; "wss": a browser's
    WebSocket, in `query_string` (the URL's, without "?")."""
    if via == "mqtt":
        presented = Presented(protocol="mqtt", tls=True, server_name=endpoint, client_id=client_id,
                              username=mqtt_username)
    else:
        headers = {"host": endpoint, "sec-websocket-protocol": "mqtt", "sec-websocket-version": "13",
                   "user-agent": "devshare-authorize"}
        presented = Presented(protocol="ws", tls=True, server_name=endpoint, client_id=client_id, headers=headers,
                              query_string=query_string)
    return build_event(presented, connection_id=str(uuid.uuid4()), token=token, signature_verified=True)


def compact_event(creds, *, via: str, client_id: str | None = None) -> dict:
    """The event AWS IoT Core sends the unsigned authorizer for a device
    presenting a compact token: nothing checked the token, so
    `signatureVerified` is false, and the Lambda finds the token where the
    device put it. `via` "mqtt": client id and password (the username names
    the authorizer); "https-header" or "https-query": an HTTPS publish
    (whose topic the event does not carry) with the authorizer's name and the token in headers or in the
    URL's query string. `creds` is an issued compact credential
    (authz.tokens.credentials.Credentials), sent as a device sends it;
    `client_id` overrides its MQTT client id."""
    endpoint = creds.endpoint
    if via == "mqtt":
        presented = Presented(protocol="mqtt", tls=True, server_name=endpoint,
                              client_id=client_id or creds.client_id, username=creds.mqtt_username,
                              password=creds.mqtt_password.encode("ascii"))
    elif via == "https-header":
        # HTTP header names arrive lower-cased, as AWS hands them over.
        headers = {name.lower(): value for name, value in creds.http_headers.items()}
        presented = Presented(protocol="http", tls=True, server_name=endpoint, headers={"host": endpoint, **headers},
                              query_string="qos=1")
    elif via == "https-query":
        presented = Presented(protocol="http", tls=True, server_name=endpoint, headers={"host": endpoint},
                              query_string=f"qos=1&{creds.query_string}")
    else:
        raise ValueError(f"a compact token goes by {', '.join(COMPACT_VIAS)}, not {via!r}")
    return build_event(presented, connection_id=str(uuid.uuid4()), token=None, signature_verified=False)


@dataclass(frozen=True)
class LambdaContext:
    """The part of the Lambda context object the handler reads."""

    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))


@contextlib.contextmanager
def _quiet(logger_name: str):
    """botocore says at INFO where the Lambda's client found credentials: noise here."""
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def _build():
    """lambda_bridge.handler.build. Importing the module starts its own handler
    from this process's environment, as the Lambda runtime would; what that
    one logs is about the shell, not `env`, so it is dropped."""
    with contextlib.redirect_stdout(io.StringIO()), _quiet("botocore.credentials"):
        from lambda_bridge.handler import build
    return build


def invoke(event: dict, env: dict[str, str], *, at: float | None = None) -> tuple[dict, dict | None, list[dict]]:
    """Cold-start a handler built from `env` and call it once: (its answer,
    its log line, anything it logged at cold start). It prints its log lines;
    they are caught here rather than interleaved with a report. `at`: the
    epoch second its clock reads instead of now."""
    build = _build()
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), _quiet("botocore.credentials"):
        handler = build(env)
        if at is not None and handler.authorizer is not None:
            handler.authorizer.clock = lambda: at
        response = handler(event, LambdaContext())
    records = []
    for line in printed.getvalue().splitlines():
        if line.strip():
            try:
                records.append(json.loads(line))
            except ValueError:
                records.append({"event": "unparsed", "line": line[:500]})
    decision = [r for r in records if r.get("event") == "authorize"]
    return response, (decision[-1] if decision else None), [r for r in records if r.get("event") != "authorize"]


@dataclass(frozen=True)
class Token:
    """What a report says about the token, never the token itself."""

    client_id: str
    kid: str
    expires_at: datetime
    expires: str  # expires_at for people ("2026-01-01 10:00:00Z (in 9m 59s)")
    credential: str = SIGNED_CREDENTIAL  # or COMPACT_CREDENTIAL


VIA_TEXT = {
    "mqtt": "MQTT over TLS, token in the username",
    "wss": "MQTT over WebSocket, token in the URL's query string",
}
# How a device sends a compact token (docs/credentials.md#compact-device-tokens):
# the MQTT password, or an HTTPS publish with the parameters in headers or in the query string.
COMPACT_VIA_TEXT = {
    "mqtt": "MQTT over TLS to the unsigned authorizer, token in the password",
    "https-header": "HTTPS publish to the unsigned authorizer, token in a header",
    "https-query": "HTTPS publish to the unsigned authorizer, token in the URL's query string",
}
COMPACT_VIAS = tuple(COMPACT_VIA_TEXT)


class Report:
    """The authorizer's answer and the verdict on one action, as text or JSON."""

    def __init__(self, *, principal_label: str, principal: dict, token: Token, asked: str, via: str,
                 response: dict, log_line: dict | None, cold_start: list[dict], action: str, topic: str | None,
                 region: str, account: str, at: str | None = None):
        self.principal_label, self.principal, self.token = principal_label, principal, token
        self.at = at  # the moment judged, when not now
        self.asked, self.via = asked, via
        self.response, self.log_line, self.cold_start = response, log_line or {}, cold_start
        self.action, self.topic = action, topic
        self.iot_action = ACTIONS[action]
        self.name = asked if action == "connect" else topic
        self.region, self.account = region, account
        self.resource = evaluator.arn(self.region, self.account, evaluator.RESOURCE_TYPES[self.iot_action],
                                      self.name)
        self.documents = response.get("policyDocuments") or []
        self.allowed, self.why = self._judge()

    @property
    def reason(self) -> str:
        if self.log_line.get("reason"):
            return self.log_line["reason"]
        return Reason.OK if self.response.get("isAuthenticated") else "unknown"

    def _judge(self) -> tuple[bool, str]:
        if not self.response.get("isAuthenticated"):
            return False, f"the authorizer refused the connection ({self.reason})"
        connection = evaluator.Connection(self.documents, self.region, self.account, self.asked)
        if connection.can(self.iot_action, self.name):
            return True, "a policy statement allows it"
        if self.action != "connect" and not connection.connects:
            return False, f"the policies do not allow connecting as {self.asked}"
        if connection.decide(self.iot_action, self.name) == "deny":
            return False, "an explicit Deny matches"
        return False, "no policy statement allows it"

    def as_text(self, *, quiet: bool) -> str:
        r = self.response
        compact = self.token.credential == COMPACT_CREDENTIAL
        via = (COMPACT_VIA_TEXT if compact else VIA_TEXT)[self.via]
        checked = ("compact, no signature for AWS IoT to check (the Lambda verifies it)" if compact
                   else "signature verified as AWS IoT would")
        client = self.asked if self.asked == self.token.client_id else \
            f"{self.asked} (the token's is {self.token.client_id})"
        lines = [
            f"Principal   {self.principal_label}",
            f"Client id   {client}",
            *([f"At          {self.at}: the token is dated then and the authorizer's clock reads it"]
              if self.at else []),
            f"Token       kid {self.token.kid}, expires {self.token.expires}; {checked}",
            f"Event       {via}",
            f"Authorizer  isAuthenticated={str(bool(r.get('isAuthenticated'))).lower()}  reason={self.reason}"
            + (f" ({self.log_line['detail']})" if self.log_line.get("detail") else ""),
            f"            principalId={r.get('principalId')}  refreshAfterInSeconds={r.get('refreshAfterInSeconds')}"
            f"  disconnectAfterInSeconds={r.get('disconnectAfterInSeconds')}  policyDocuments={len(self.documents)}",
        ]
        for record in self.cold_start:
            lines.append(f"Cold start  {json.dumps(record, separators=(',', ':'))}")
        if self.log_line:
            lines.append(f"Log line    {json.dumps(self.log_line, separators=(',', ':'))}")
        target = self.asked if self.action == "connect" else self.topic
        lines.append(f"Action      {self.action} {target}  ({self.iot_action} on {self.resource})")
        lines.append(f"Verdict     {'ALLOW' if self.allowed else 'DENY'}: {self.why}")
        if not quiet and self.documents:
            for number, document in enumerate(self.documents, 1):
                lines.append("")
                lines.append(f"Policy document {number} of {len(self.documents)} ({len(document)} characters):")
                lines.append(json.dumps(json.loads(document), indent=2))
        return "\n".join(lines)

    def as_json(self, *, quiet: bool) -> str:
        r = self.response
        body = {
            "principal": self.principal,
            "clientId": self.asked,
            "tokenClientId": self.token.client_id,
            "kid": self.token.kid,
            "credential": self.token.credential,
            "expiresAt": self.token.expires_at.isoformat(),
            "via": self.via,
            "at": self.at,
            "authorizer": {
                "isAuthenticated": bool(r.get("isAuthenticated")),
                "reason": self.reason,
                "detail": self.log_line.get("detail"),
                "principalId": r.get("principalId"),
                "refreshAfterInSeconds": r.get("refreshAfterInSeconds"),
                "disconnectAfterInSeconds": r.get("disconnectAfterInSeconds"),
                "policyDocuments": len(self.documents),
            },
            "log": self.log_line or None,
            "coldStart": self.cold_start,
            "action": {"name": self.action, "iotAction": self.iot_action, "topic": self.topic,
                       "resource": self.resource, "verdict": "ALLOW" if self.allowed else "DENY", "why": self.why},
        }
        if not quiet:
            body["policies"] = [json.loads(d) for d in self.documents]
        return json.dumps(body, indent=2)
