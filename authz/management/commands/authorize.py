"""Play one connection against the real authorizer, end to end.

A real token is issued from the active key (recorded and audited like any
other), its signature is checked the way the AWS IoT gateway checks it, the
event the gateway would send is built, and a `lambda_bridge.handler` built
from the Lambda's environment made from Django's settings runs on it, against
the configured DynamoDB table. Then the asked action is judged against the
policies it answered with, by `lambda_bridge.evaluator`. The gateway's part
is `authz.tokens.simulator`, which has no Django in it.

`--compact` issues a device a compact token instead
(docs/credentials.md#compact-device-tokens) and plays the unsigned
authorizer's event: no signature check, `signatureVerified` false, the token
where the device puts it (`--via mqtt`: the password; `https-header`,
`https-query`: an HTTPS publish).

`--at` asks about another moment, for weekly schedules and shares that start
or end later: the token is dated then (its `iat`, `nbf` and `exp`) and the
handler's clock reads that moment, so the snapshot in the table, as pushed
now, is judged as the authorizer will judge it then.

Exit status: 0 the action is allowed, 1 it is denied (by the authorizer or by
the policies), 2 the question could not be asked (bad input, no key, no
table). The token and its signature are never printed.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from urllib.parse import urlsplit

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from authz.live import cutoffs
from authz.models import SigningKey
from authz.snapshots import store
from authz.tokens import credentials, rotation, simulator
from devices import audit
from devices.models import Device, Tenant, User
from lambda_bridge import keys, snapshot, vocabulary
from lambda_bridge.config import Config, ConfigError
from lambda_bridge.vocabulary import SETUP_REASONS

USAGE = 2
PREVIEW_REACH = timedelta(days=3653)
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
        parser.add_argument("--action", required=True, choices=list(simulator.ACTIONS))
        parser.add_argument("--topic", metavar="TOPIC",
                            help="Topic (publish, receive) or topic filter (subscribe); not for connect.")
        parser.add_argument("--compact", action="store_true",
                            help="With --device: issue a compact token and ask the unsigned authorizer.")
        parser.add_argument("--via", choices=list({**simulator.VIA_TEXT, **simulator.COMPACT_VIA_TEXT}), default="mqtt",
                            help="mqtt: MQTT over TLS, the authorizer's parameters in the username, or with "
                                 "--compact the token in the password (default); wss: MQTT over WebSocket, the "
                                 "browser's way, in the URL's query string; with --compact only, https-header and "
                                 "https-query: an HTTPS publish with the token in a header or the query string.")
        parser.add_argument("--at", metavar="WHEN",
                            help="Judge the grants at this moment instead of now: ISO 8601 with its UTC offset, "
                                 "like 2027-03-30T10:00+02:00. The token is dated then and the authorizer's clock "
                                 "reads it.")
        parser.add_argument("--quiet", action="store_true", help="Leave out the policy documents.")
        parser.add_argument("--json", dest="as_json", action="store_true",
                            help="Print one JSON object instead of the report.")

    def handle(self, *args, email, device, tenant, client_id, action, topic, via, at, quiet, as_json, compact,
               **options):
        topic = _checked_topic(action, topic)
        _check_via(via, compact=compact, device=device)
        at = _moment(at)
        principal = _user_principal(email, tenant) if email else _device_principal(device, tenant, compact=compact)
        env = lambda_environment()
        try:
            config = Config.from_env(env)
        except ConfigError as exc:
            raise usage(f"the authorizer cannot start with these settings: {exc}") from None
        _check_table()
        if at is not None:
            principal.check_cutoff(at)

        with audit.origin("command"):
            creds = principal.issue(now=at)
        asked = creds.client_id if client_id is None else client_id
        event = _event(creds, via=via, client_id=asked)
        response, log_line, cold_start = simulator.invoke(event, env,
                                                          at=None if at is None else at.timestamp())

        left = rotation.format_duration(creds.expires_at - (at or timezone.now()))
        token = simulator.Token(client_id=creds.client_id, kid=creds.kid, expires_at=creds.expires_at,
                                expires=f"{rotation.format_when(creds.expires_at)} "
                                        f"({'in ' + left if at is None else left + ' after --at'})",
                                credential=creds.credential)
        report = simulator.Report(principal_label=principal.label(), principal=principal.describe(), token=token,
                                  asked=asked, via=via, response=response, log_line=log_line, cold_start=cold_start,
                                  action=action, topic=topic, region=config.region, account=config.account,
                                  at=None if at is None else rotation.format_when(at))
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
    kind = snapshot_kind = ""
    tenant: Tenant

    def issue(self, *, now: datetime | None) -> credentials.Credentials:
        try:
            return self._issue(now=now)
        except credentials.ScopeRequired as exc:
            raise Denied(f"refused at issuance: {exc}") from None
        except credentials.CredentialsUnavailable as exc:
            raise usage(str(exc)) from None
        except PermissionDenied as exc:
            raise usage(str(exc) or "not allowed") from None
        except ValidationError as exc:
            raise usage("; ".join(exc.messages)) from None

    def check_cutoff(self, at: datetime) -> None:
        """A token dated before the principal's cut-off would be dated at it
        instead (credentials.issue_floor), so it would not be a token of `at`:
        say so rather than judge another moment."""
        floor = cutoffs.issue_floor(tenant_id=self.tenant.pk, kind=self.snapshot_kind,
                                     principal=self.principal)
        if floor is not None and at.timestamp() < floor:
            raise usage(f"--at {rotation.format_when(at)} is before this {self.kind}'s token cut-off "
                        f"({rotation.format_when(datetime.fromtimestamp(floor, at.tzinfo))}): every token "
                        f"issued then is refused (token_revoked).")


class _User(_Principal):
    kind, snapshot_kind = "user", snapshot.USER

    def __init__(self, user: User, tenant: Tenant):
        self.user, self.tenant = user, tenant
        self.principal = str(user.pk)

    def _issue(self, *, now):
        # Used for one connection: the shortest lifetime the authorizer accepts.
        return credentials.issue_user_credentials(actor=self.user, tenant=self.tenant,
                                                  lifetime=credentials.MIN_LIFETIME_SECONDS, now=now)

    def describe(self) -> dict:
        return {"kind": "user", "email": self.user.email, "user_id": self.user.pk, "tenant": self.tenant.slug}

    def label(self) -> str:
        return f"{self.user.email} (user {self.user.pk}), tenant {self.tenant.slug}"


class _Device(_Principal):
    kind, snapshot_kind = "device", snapshot.DEVICE

    def __init__(self, device: Device, *, compact: bool = False):
        self.device, self.tenant = device, device.tenant
        self.principal = device.thing_name
        self.credential = vocabulary.COMPACT_CREDENTIAL if compact else vocabulary.SIGNED_CREDENTIAL

    def _issue(self, *, now):
        return credentials.issue_device_credentials(actor=None, device=self.device, by_operator=True,
                                                    lifetime=credentials.MIN_LIFETIME_SECONDS, now=now,
                                                    credential=self.credential)

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


def _device_principal(thing: str, slug: str | None, *, compact: bool = False) -> _Device:
    device = Device.objects.select_related("tenant").filter(thing_name=thing).first()
    if device is None:
        raise usage(f"No device with thing name {thing!r}.")
    if slug and _tenant(slug) != device.tenant:
        raise usage(f"Device {thing} belongs to tenant {device.tenant.slug!r}, not {slug!r}.")
    return _Device(device, compact=compact)


def _check_via(via: str, *, compact: bool, device: str | None) -> None:
    if compact and not device:
        raise usage("--compact is for devices (--device THING): a person's app gets signed credentials.")
    if compact and via not in simulator.COMPACT_VIAS:
        raise usage(f"--via {via} does not carry a compact token; use one of {', '.join(simulator.COMPACT_VIAS)}.")
    if not compact and via in simulator.COMPACT_VIAS and via != "mqtt":
        raise usage(f"--via {via} is for --compact tokens only.")


def _event(creds: credentials.Credentials, *, via: str, client_id: str) -> dict:
    """The event the authorizer that takes this kind of credential gets. A
    signed token is first checked as the AWS IoT gateway checks it."""
    if creds.compact:
        return simulator.compact_event(creds, via=via, client_id=client_id)
    public_pems = [k.public_pem for k in SigningKey.objects.exclude(state=keys.RETIRED)]
    if not simulator.gateway_verifies(creds.token, creds.token_signature, public_pems):
        raise usage(f"the token's signature does not verify with the authorizer's public keys (kid "
                    f"{creds.kid}): AWS IoT would not invoke the authorizer")
    return simulator.connection_event(endpoint=creds.endpoint, via=via, client_id=client_id, token=creds.token,
                                      mqtt_username=creds.mqtt_username, query_string=urlsplit(creds.wss_url).query)


def _moment(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise usage(f"--at {text!r} is not an ISO 8601 time, like 2027-03-30T10:00+02:00.") from None
    if moment.utcoffset() is None:
        raise usage(f"--at {text!r} has no UTC offset: add one (+02:00, Z), since a wall time alone is "
                    f"ambiguous.")
    # The token is dated then: keep it within reach of the calendar (year
    # 9999 overflows) and of the clock-change tables a preview is for.
    if abs(moment - timezone.now()) > PREVIEW_REACH:
        raise usage(f"--at {text!r} is more than ten years from now.")
    return moment


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
    """The Lambda's settings, from Django's."""
    return simulator.lambda_environment(
        table=settings.DYNAMODB_TABLE, issuer=settings.IOT_TOKEN_ISSUER, audience=settings.IOT_TOKEN_AUDIENCE,
        token_key_name=settings.IOT_TOKEN_KEY_NAME, account=settings.AWS_ACCOUNT_ID, region=settings.AWS_REGION,
        iot_region=settings.IOT_REGION, endpoint_url=settings.DYNAMODB_ENDPOINT_URL,
        access_key_id=settings.AWS_ACCESS_KEY_ID, secret_access_key=settings.AWS_SECRET_ACCESS_KEY,
    )


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
