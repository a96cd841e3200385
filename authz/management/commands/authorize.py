"""Play one connection against the real authorizer, end to end.

A real token is issued from the active key (recorded and audited like any
other), its signature is checked the way the AWS IoT gateway checks it, the
event the gateway would send is built, and `lambda_bridge.handler` runs on
it with the Lambda's environment made from Django's settings, against the
configured DynamoDB table. Then the asked action is judged against the
policies it answered with, by `lambda_bridge.evaluator`.

Exit status: 0 the action is allowed, 1 it is denied (by the authorizer or by
the policies), 2 the question could not be asked (bad input, no key, no
table). The token and its signature are never printed.
"""
from __future__ import annotations

import base64
import binascii
import contextlib
import importlib
import io
import json
import logging
import os
import sys
import uuid
from urllib.parse import urlsplit

from botocore.exceptions import BotoCoreError, ClientError
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from authz.models import SigningKey
from authz.snapshots import store
from authz.tokens import credentials, rotation
from devices import audit
from devices.models import Device, Tenant, User
from lambda_bridge import evaluator, keys
from lambda_bridge.config import Config, ConfigError

USAGE = 2
ACTIONS = {"connect": "iot:Connect", "publish": "iot:Publish", "subscribe": "iot:Subscribe", "receive": "iot:Receive"}
# Refusals that say the setup is broken, not that access is denied.
SETUP_REASONS = {"keys_unavailable", "snapshot_unavailable", "misconfigured"}
HANDLER = "lambda_bridge.handler"
MAX_TOPIC_BYTES = 256


class Denied(CommandError):
    """The action is not allowed: exit status 1, the report already printed."""

    def __init__(self, message: str):
        super().__init__(message, returncode=1)


def usage(message: str) -> CommandError:
    return CommandError(message, returncode=USAGE)


class Command(BaseCommand):
    help = ("Issue a real token for a person (--as EMAIL) or a device (--device THING), play the connection AWS "
            "IoT would make with it against the authorizer Lambda and the configured DynamoDB table, and say "
            "whether --action is allowed. Exit 0 allowed, 1 denied, 2 bad input or setup.")

    def add_arguments(self, parser):
        who = parser.add_mutually_exclusive_group(required=True)
        who.add_argument("--as", dest="email", metavar="EMAIL", help="Connect as this person's app.")
        who.add_argument("--device", metavar="THING", help="Connect as this device (its thing name).")
        parser.add_argument("--tenant", metavar="SLUG",
                            help="The tenant to connect in; needed when the person belongs to several.")
        parser.add_argument("--client-id", metavar="ID",
                            help="The MQTT client id the connection asks for (default: the token's own).")
        parser.add_argument("--action", required=True, choices=list(ACTIONS))
        parser.add_argument("--topic", metavar="TOPIC",
                            help="Topic (publish, receive) or topic filter (subscribe); not for connect.")
        parser.add_argument("--via", choices=["mqtt", "wss"], default="mqtt",
                            help="mqtt: MQTT over TLS, the authorizer's parameters in the username (default); "
                                 "wss: MQTT over WebSocket, the browser's way, in the URL's query string.")
        parser.add_argument("--quiet", action="store_true", help="Leave out the policy documents.")
        parser.add_argument("--json", dest="as_json", action="store_true",
                            help="Print one JSON object instead of the report.")

    def handle(self, *args, email, device, tenant, client_id, action, topic, via, quiet, as_json,
               **options):
        topic = _checked_topic(action, topic)
        principal = _user_principal(email, tenant) if email else _device_principal(device, tenant)
        env = lambda_environment()
        try:
            config = Config.from_env(env)
        except ConfigError as exc:
            raise usage(f"the authorizer cannot start with these settings: {exc}") from None
        _check_table()

        with audit.origin("command"):
            creds = principal.issue()
        public_pems = [k.public_pem for k in SigningKey.objects.exclude(state=keys.RETIRED)]
        if not gateway_verifies(creds.token, creds.token_signature, public_pems):
            raise usage(f"the token's signature does not verify with the authorizer's public keys (kid "
                        f"{creds.kid}): AWS IoT would not invoke the authorizer")
        asked = creds.client_id if client_id is None else client_id
        event = build_event(creds, via=via, client_id=asked)
        response, log_line, cold_start = invoke(event, env)

        report = Report(principal=principal, creds=creds, asked=asked, via=via, response=response,
                        log_line=log_line, cold_start=cold_start, action=action, topic=topic, config=config)
        if as_json:
            self.stdout.write(report.as_json(quiet=quiet))
        else:
            self.stdout.write(report.as_text(quiet=quiet))
        reason = report.reason
        if not response.get("isAuthenticated") and reason in SETUP_REASONS:
            detail = (log_line or {}).get("detail") or (cold_start[0].get("detail") if cold_start else "")
            raise usage(f"the authorizer could not decide: {reason}" + (f" ({detail})" if detail else ""))
        if not report.allowed:
            raise Denied(f"{action}{' ' + topic if topic else ''}: {report.why}")


# --- who ------------------------------------------------------------------------------


class _Principal:
    kind = ""

    def issue(self) -> credentials.Credentials:
        try:
            return self._issue()
        except credentials.ScopeRequired as exc:
            raise Denied(f"refused at issuance: {exc}") from None
        except credentials.CredentialsUnavailable as exc:
            raise usage(str(exc)) from None
        except PermissionDenied as exc:
            raise usage(str(exc) or "not allowed") from None
        except ValidationError as exc:
            raise usage("; ".join(exc.messages)) from None


class _User(_Principal):
    kind = "user"

    def __init__(self, user: User, tenant: Tenant):
        self.user, self.tenant = user, tenant

    def _issue(self):
        # Used for one connection: the shortest lifetime the authorizer accepts.
        return credentials.issue_user_credentials(actor=self.user, tenant=self.tenant,
                                                  lifetime=credentials.MIN_LIFETIME_SECONDS)

    def describe(self) -> dict:
        return {"kind": "user", "email": self.user.email, "user_id": self.user.pk, "tenant": self.tenant.slug}

    def label(self) -> str:
        return f"{self.user.email} (user {self.user.pk}), tenant {self.tenant.slug}"


class _Device(_Principal):
    kind = "device"

    def __init__(self, device: Device):
        self.device, self.tenant = device, device.tenant

    def _issue(self):
        return credentials.issue_device_credentials(actor=None, device=self.device, by_operator=True,
                                                    lifetime=credentials.MIN_LIFETIME_SECONDS)

    def describe(self) -> dict:
        return {"kind": "device", "thing": self.device.thing_name, "name": self.device.name,
                "tenant": self.tenant.slug}

    def label(self) -> str:
        return f"device {self.device.thing_name} ({self.device.name}), tenant {self.tenant.slug}"


def _tenant(slug: str) -> Tenant:
    tenant = Tenant.objects.filter(slug=slug).first()
    if tenant is None:
        raise usage(f"No tenant with slug {slug!r}.")
    return tenant


def _user_principal(email: str, slug: str | None) -> _User:
    user = User.objects.filter(email__iexact=email.strip()).first()
    if user is None:
        raise usage(f"No user with email {email!r}.")
    tenants = list(Tenant.objects.filter(memberships__user=user).order_by("slug"))
    slugs = ", ".join(t.slug for t in tenants) or "none"
    if slug:
        tenant = _tenant(slug)
        if tenant not in tenants:
            raise usage(f"{user.email} is not a member of tenant {slug!r} (their tenants: {slugs}).")
        return _User(user, tenant)
    if not tenants:
        raise usage(f"{user.email} belongs to no tenant.")
    if len(tenants) > 1:
        raise usage(f"{user.email} belongs to {len(tenants)} tenants ({slugs}): pick one with --tenant.")
    return _User(user, tenants[0])


def _device_principal(thing: str, slug: str | None) -> _Device:
    device = Device.objects.select_related("tenant").filter(thing_name=thing).first()
    if device is None:
        raise usage(f"No device with thing name {thing!r}.")
    if slug and _tenant(slug) != device.tenant:
        raise usage(f"Device {thing} belongs to tenant {device.tenant.slug!r}, not {slug!r}.")
    return _Device(device)


def _checked_topic(action: str, topic: str | None) -> str | None:
    if action == "connect":
        if topic is not None:
            raise usage("--topic does not apply to connect.")
        return None
    if not topic:
        raise usage(f"--topic is required for {action}.")
    if len(topic.encode()) > MAX_TOPIC_BYTES:
        raise usage(f"A topic is at most {MAX_TOPIC_BYTES} bytes.")
    if action != "subscribe" and ("+" in topic or "#" in topic):
        raise usage(f"A topic to {action} names one topic: '+' and '#' belong in a subscribe filter.")
    return topic


# --- the table and the Lambda ---------------------------------------------------------


def lambda_environment() -> dict[str, str]:
    """The Lambda's settings (README: The authorizer), from Django's."""
    env = {
        "DEVSHARE_TABLE": settings.DYNAMODB_TABLE,
        "DEVSHARE_TOKEN_ISSUER": settings.IOT_TOKEN_ISSUER,
        "DEVSHARE_TOKEN_AUDIENCE": settings.IOT_TOKEN_AUDIENCE,
        "DEVSHARE_TOKEN_KEY_NAME": settings.IOT_TOKEN_KEY_NAME,
        "DEVSHARE_AWS_ACCOUNT_ID": settings.AWS_ACCOUNT_ID,
        "AWS_REGION": settings.AWS_REGION,
        "DEVSHARE_IOT_REGION": settings.IOT_REGION,
        # Empty means real DynamoDB, also over an endpoint left in the shell.
        "DEVSHARE_DYNAMODB_ENDPOINT_URL": settings.DYNAMODB_ENDPOINT_URL or "",
    }
    if settings.AWS_ACCESS_KEY_ID and settings.AWS_SECRET_ACCESS_KEY:
        env["AWS_ACCESS_KEY_ID"] = settings.AWS_ACCESS_KEY_ID
        env["AWS_SECRET_ACCESS_KEY"] = settings.AWS_SECRET_ACCESS_KEY
    return {name: str(value) for name, value in env.items()}


def _check_table() -> None:
    """Before anything is issued: the table answers and holds the key item."""
    where = f"table {settings.DYNAMODB_TABLE} at {settings.DYNAMODB_ENDPOINT_URL or 'AWS'}"
    try:
        item = store.get_item(keys.ITEM_KEY)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code == "ResourceNotFoundException":
            raise usage(f"DynamoDB has no {where}: run `manage.py ensure_dynamodb_table`.") from None
        raise usage(f"DynamoDB refused reading {where}: {code}.") from None
    except BotoCoreError as exc:
        raise usage(f"DynamoDB is unreachable ({where}): {exc.__class__.__name__}.") from None
    if item is None:
        raise usage(f"The signing keys are not published to {where}: run `manage.py signing_keys rotate`.")


@contextlib.contextmanager
def _environ(values: dict[str, str]):
    """Exactly `values` as the Lambda's settings: any other DEVSHARE_* left in
    the shell (a leeway, a refresh) would make the verdict differ from the
    deployed Lambda's, and a stray session token would not match the keys."""
    stray = [n for n in os.environ if n.startswith("DEVSHARE_") or n == "AWS_SESSION_TOKEN"]
    saved = {name: os.environ.get(name) for name in [*values, *stray]}
    for name in stray:
        if name not in values and (name != "AWS_SESSION_TOKEN" or "AWS_ACCESS_KEY_ID" in values):
            del os.environ[name]
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


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


def invoke(event: dict, env: dict[str, str]) -> tuple[dict, dict | None, list[dict]]:
    """Cold-start the handler with `env` and call it once: (its answer, its
    log line, anything it logged at cold start). It prints its log lines;
    they are caught here rather than interleaved with the report."""
    printed = io.StringIO()
    with _environ(env), contextlib.redirect_stdout(printed), _quiet("botocore.credentials"):
        module = sys.modules.get(HANDLER)
        module = importlib.reload(module) if module is not None else importlib.import_module(HANDLER)
        response = module.lambda_handler(event, None)
    records = []
    for line in printed.getvalue().splitlines():
        if line.strip():
            try:
                records.append(json.loads(line))
            except ValueError:
                records.append({"event": "unparsed", "line": line[:500]})
    decision = [r for r in records if r.get("event") == "authorize"]
    return response, (decision[-1] if decision else None), [r for r in records if r.get("event") != "authorize"]


def gateway_verifies(token: str, signature: str, public_pems: list[str]) -> bool:
    """What the AWS IoT gateway checks before it invokes a signed authorizer:
    base64(RSA-SHA256(token)), PKCS#1 v1.5, under any of the authorizer's
    token-signing public keys (the live slots)."""
    try:
        raw = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):
        return False
    for pem in public_pems:
        try:
            load_pem_public_key(pem.encode()).verify(raw, token.encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
            return True
        except (InvalidSignature, ValueError, TypeError):
            continue
    return False


def build_event(creds: credentials.Credentials, *, via: str, client_id: str) -> dict:
    """The event AWS IoT Core sends a signed custom authorizer (docs/authorizer.md; the
    canned events in tests/lambda_bridge/events/). The gateway has verified
    the signature, so `signatureVerified` is true."""
    event = {"signatureVerified": True, "protocolData": {"tls": {"serverName": creds.endpoint}},
             "connectionMetadata": {"id": str(uuid.uuid4())}}
    if via == "mqtt":
        # MQTT over TLS on 443 (ALPN mqtt): the parameters ride in the username,
        # and the gateway hands over the token it extracted and verified.
        event["token"] = creds.token
        event["protocols"] = ["tls", "mqtt"]
        event["protocolData"]["mqtt"] = {"username": creds.mqtt_username, "clientId": client_id}
    else:
        # A browser's WebSocket: the token is only in the URL's query string.
        event["protocols"] = ["tls", "http", "mqtt"]
        event["protocolData"]["http"] = {
            "headers": {"host": creds.endpoint, "sec-websocket-protocol": "mqtt", "sec-websocket-version": "13",
                        "user-agent": "devshare-authorize"},
            "queryString": "?" + urlsplit(creds.wss_url).query,
        }
        event["protocolData"]["mqtt"] = {"clientId": client_id}
    return event


# --- the answer -----------------------------------------------------------------------


class Report:
    def __init__(self, *, principal, creds, asked, via, response, log_line, cold_start, action, topic, config):
        self.principal, self.creds, self.asked, self.via = principal, creds, asked, via
        self.response, self.log_line, self.cold_start = response, log_line or {}, cold_start
        self.action, self.topic = action, topic
        self.iot_action = ACTIONS[action]
        self.name = asked if action == "connect" else topic
        self.region, self.account = config.region, config.account
        self.resource = evaluator.arn(self.region, self.account, evaluator.RESOURCE_TYPES[self.iot_action],
                                      self.name)
        self.documents = response.get("policyDocuments") or []
        self.allowed, self.why = self._judge()

    @property
    def reason(self) -> str:
        if self.log_line.get("reason"):
            return self.log_line["reason"]
        return "ok" if self.response.get("isAuthenticated") else "unknown"

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

    def _expires(self) -> str:
        left = self.creds.expires_at - timezone.now()
        return f"{rotation.format_when(self.creds.expires_at)} (in {rotation.format_duration(left)})"

    def as_text(self, *, quiet: bool) -> str:
        r = self.response
        via = ("MQTT over TLS, token in the username" if self.via == "mqtt"
               else "MQTT over WebSocket, token in the URL's query string")
        client = self.asked if self.asked == self.creds.client_id else \
            f"{self.asked} (the token's is {self.creds.client_id})"
        lines = [
            f"Principal   {self.principal.label()}",
            f"Client id   {client}",
            f"Token       kid {self.creds.kid}, expires {self._expires()}; signature verified as AWS IoT would",
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
            "principal": self.principal.describe(),
            "clientId": self.asked,
            "tokenClientId": self.creds.client_id,
            "kid": self.creds.kid,
            "expiresAt": self.creds.expires_at.isoformat(),
            "via": self.via,
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
