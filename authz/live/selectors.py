"""Reads of live access: who is connected to a device right now
(docs/api.md#live-sessions).

AWS IoT cannot list a device's connections, only answer for one client id
(GetConnection). So the platform asks about the client ids that may reach
the device: the device's own (its thing name) and those of the unexpired
tokens it issued to people who can reach the device now, leaving out tokens
scoped away from it. A connection the platform issued no token for is not
shown; none can reach the device through the authorizer anyway.
"""
from dataclasses import dataclass
from datetime import datetime

from django.utils import timezone

from authz.models import IssuedCredential
from authz.tokens import iot
from devices.models import Device, User
from devices.selectors import access_audience, held_level, owns_or_administers
from devices.services.rules import _require
from lambda_bridge import snapshot

# GetConnection is one call per client id: a device shared with thousands
# asks about the newest tokens only, and the docs say so.
MAX_CANDIDATES = 200


@dataclass(frozen=True)
class Session:
    client_id: str
    kind: str  # "device" or "user"
    user: User | None
    connected_since: datetime | None = None
    issued_at: datetime | None = None
    expires_at: datetime | None = None


def device_sessions(*, actor: User, device: Device, now: datetime | None = None,
                    gateway: iot.IotGateway | None = None) -> list[Session]:
    """The live connections to `device` (owner or tenant admin). Raises
    iot.IotError when AWS IoT cannot be asked."""
    _require(owns_or_administers(actor, device), "Only the owner or a tenant admin may see a device's sessions.")
    gateway = gateway or iot.gateway()
    sessions = []
    for candidate in session_candidates(device=device, now=now):
        connection = gateway.get_connection(candidate.client_id)
        if connection is not None and connection.connected:
            sessions.append(Session(client_id=candidate.client_id, kind=candidate.kind, user=candidate.user,
                                    connected_since=connection.connected_since, issued_at=candidate.issued_at,
                                    expires_at=candidate.expires_at))
    return sessions


def session_candidates(*, device: Device, now: datetime | None = None,
                       limit: int | None = MAX_CANDIDATES) -> list[Session]:
    """The client ids that may be connected to `device` now, not asked yet:
    the device's own first, then people's tokens, newest first, at most
    `limit` in all (None: every one)."""
    now = now or timezone.now()
    own = _device_candidate(device, now)
    people = _user_candidates(device, now, None if limit is None else limit - 1)
    return [own, *people]


def _device_candidate(device: Device, now: datetime) -> Session:
    latest = (IssuedCredential.objects.filter(tenant_id=device.tenant_id, kind=snapshot.DEVICE,
                                              principal=device.thing_name).live(now).first())
    return Session(client_id=device.thing_name, kind="device", user=None,
                   issued_at=latest and latest.issued_at, expires_at=latest and latest.expires_at)


def _user_candidates(device: Device, now: datetime, limit: int | None) -> list[Session]:
    users = {str(pk) for pk in access_audience(devices=[device], now=now)}
    tokens = (IssuedCredential.objects.filter(tenant_id=device.tenant_id, kind=snapshot.USER, principal__in=users)
              .live(now).order_by("-issued_at", "-id"))
    reaching: dict[str, User | None] = {}
    found = []
    for token in tokens.iterator():
        if not _scope_covers(token.scope, device):
            continue
        if token.principal not in reaching:
            reaching[token.principal] = _reaching_user(token.principal, device, now)
        if reaching[token.principal] is not None:
            found.append(Session(client_id=token.client_id, kind="user", user=reaching[token.principal],
                                 issued_at=token.issued_at, expires_at=token.expires_at))
            if limit is not None and len(found) >= limit:
                break
    return found


def _scope_covers(scope: dict | None, device: Device) -> bool:
    """Whether a token's `scope` claim lets it reach `device`: unscoped,
    scoped to its thing, or to its group (docs/credentials.md). Read here, not
    in SQL: JSON containment is PostgreSQL's, and `make run` uses SQLite."""
    if not scope:
        return True
    if "things" in scope:
        return device.thing_name in scope["things"]
    return device.group_id is not None and scope.get("group") == device.group_id


def _reaching_user(principal: str, device: Device, now: datetime) -> User | None:
    """The user behind a token's principal, if they hold a grant on `device`
    now, at any hour: a connection opened inside a weekly window may still
    carry the device after it closes, until the sweep's cut lands, and that
    is when an owner most needs to see and end it."""
    user = User.objects.filter(pk=int(principal)).first()
    if user is None or held_level(user=user, device=device, now=now) is None:
        return None
    return user
