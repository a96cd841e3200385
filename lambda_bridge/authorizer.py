"""One connection's decision: token → claims → snapshot → policies.

Kept apart from the Lambda entry point so that tests and benchmarks can run it
with any store (DynamoDB, or a dict) and any clock.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Callable, Protocol

from lambda_bridge import compact, events, policy, snapshot, tokens, vocabulary
from lambda_bridge.config import MAX_TTL, MIN_TTL, REFRESH_SLACK, Config
from lambda_bridge.refusal import Refused
from lambda_bridge.vocabulary import Reason

REFUSED_PRINCIPAL = "refused"
# Seconds before its end that a grant is left out of a new answer
# (docs/decisions/0007-exact-ends.md).
GRANT_END_MARGIN = 10


class Store(Protocol):
    def get(self, key: str) -> dict | None: ...


@dataclass
class Decision:
    allowed: bool
    reason: str
    principal_id: str = REFUSED_PRINCIPAL
    documents: list[str] = field(default_factory=list)
    refresh: int = MIN_TTL
    disconnect: int = MIN_TTL
    # For the log line only.
    detail: str = ""
    source: str | None = None
    credential: str | None = None
    principal: str | None = None
    tenant: int | None = None
    devices: int | None = None

    def response(self) -> dict:
        return {
            "isAuthenticated": self.allowed,
            "principalId": self.principal_id,
            "disconnectAfterInSeconds": self.disconnect,
            "refreshAfterInSeconds": self.refresh,
            "policyDocuments": self.documents,
        }


class Authorizer:
    def __init__(self, config: Config, store: Store, *, clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic):
        self.config = config
        self.store = store
        self.clock = clock
        self.keys = tokens.KeyCache(store.get, ttl=config.key_cache_seconds, clock=monotonic)

    def decide(self, event) -> Decision:
        """Never raises: anything unexpected is a refusal, since AWS closes the
        connection on a failed invocation anyway and a reason beats a trace."""
        decision = Decision(allowed=False, reason=Reason.INTERNAL_ERROR)
        try:
            self._decide(event, decision)
            return decision
        except Refused as refusal:
            reason, detail = refusal.reason, refusal.detail
        except Exception as exc:  # noqa: BLE001  (any bug: refuse with a reason, see above)
            reason, detail = Reason.INTERNAL_ERROR, exc.__class__.__name__
        # What the log needs (source, principal, devices) stays; the answer is a plain no.
        decision.allowed, decision.reason, decision.detail = False, reason, detail
        decision.documents, decision.principal_id = [], REFUSED_PRINCIPAL
        decision.refresh = decision.disconnect = MIN_TTL
        return decision

    def _decide(self, event, decision: Decision) -> None:
        config = self.config
        now = int(self.clock())
        token, decision.source = events.find_token(event, config.token_key_name)
        claims = self._verify(token, signed=events.signature_verified(event), now=now, decision=decision)
        decision.principal, decision.tenant = claims.label, claims.tenant
        asked = events.mqtt_client_id(event)
        if asked is not None and asked != claims.client_id:
            raise Refused(Reason.CLIENT_ID_MISMATCH)
        snap = self._snapshot(claims)
        if revoked(snap, claims):
            raise Refused(Reason.TOKEN_REVOKED, "issued before the principal's cut-off")
        levels = usable_levels(snap, claims, now)
        decision.devices = len(levels)
        try:
            if claims.kind == snapshot.DEVICE:
                if claims.principal not in levels:
                    raise Refused(Reason.PRINCIPAL_GONE, "the device is not in its own snapshot")
                documents = policy.device_documents(thing=claims.principal, region=config.region,
                                                    account=config.account)
            else:
                documents = policy.user_documents(levels=levels, client_id=claims.client_id,
                                                  region=config.region, account=config.account)
        except policy.PolicyInputError as exc:
            raise Refused(Reason.BAD_SNAPSHOT, str(exc)[:200]) from None
        if documents is None:
            raise Refused(Reason.SCOPE_REQUIRED, f"{len(levels)} devices do not fit one connection's policies")
        decision.allowed, decision.reason, decision.documents = True, Reason.OK, documents
        decision.principal_id = principal_id(claims)
        decision.refresh, decision.disconnect = lifetimes(snap, claims, now, config)

    def _verify(self, token: str, *, signed: bool, now: int, decision: Decision) -> tokens.Claims:
        """Each authorizer takes one kind of credential (docs/authorizer.md#two-authorizers):
        the signed one platform JWTs, whose RSA signature AWS checked first;
        the unsigned one compact device tokens, which anyone may send. The
        other kind is refused before a key is looked up."""
        config = self.config
        is_compact = compact.looks_compact(token)
        decision.credential = vocabulary.COMPACT_CREDENTIAL if is_compact else vocabulary.SIGNED_CREDENTIAL
        if signed == is_compact:
            # Only a well-spelled token of the other kind is at the wrong
            # authorizer; garbage is malformed wherever it is sent. Spelling
            # is checked without a key or a read.
            (compact.parse if is_compact else tokens.parse)(token)
            raise Refused(Reason.WRONG_AUTHORIZER, f"a {decision.credential} token at the "
                                                   f"{'signed' if signed else 'unsigned'} authorizer")
        if is_compact:
            return tokens.verify_compact(token, self.keys, leeway=config.leeway_seconds, now=now)
        return tokens.verify(token, self.keys, issuer=config.issuer, audience=config.audience,
                             leeway=config.leeway_seconds, now=now)

    def _snapshot(self, claims: tokens.Claims) -> snapshot.Snapshot:
        key = snapshot.item_key(claims.kind, claims.tenant, claims.principal)
        try:
            item = self.store.get(key)
        except Exception as exc:  # noqa: BLE001  (network, throttling, permissions)
            raise Refused(Reason.SNAPSHOT_UNAVAILABLE, exc.__class__.__name__) from None
        if item is None:
            raise Refused(Reason.NO_SNAPSHOT)
        try:
            snap = snapshot.from_item(item)
        except snapshot.SnapshotError as exc:
            raise Refused(Reason.BAD_SNAPSHOT, str(exc)[:200]) from None
        if (snap.kind, snap.tenant, snap.principal) != (claims.kind, claims.tenant, claims.principal):
            raise Refused(Reason.BAD_SNAPSHOT, "item does not belong to the token's principal")
        # Before the cut-off: a tombstone's answer is principal_gone whatever
        # cut-off it carries (docs/authorizer.md#one-read).
        if snap.gone:
            raise Refused(Reason.PRINCIPAL_GONE)
        return snap


def usable_levels(snap: snapshot.Snapshot, claims: tokens.Claims, now: int) -> dict[str, int]:
    """Thing → level for the grants in force now, narrowed by the token's scope.

    A grant ending within GRANT_END_MARGIN is left out, whether it expires or
    its schedule's window closes: the platform ends live connections at a
    grant's end, and a connect in flight at that edge must not slip past the
    disconnect it triggers (docs/decisions/0007-exact-ends.md,
    docs/authorizer.md#schedules)."""
    levels: dict[str, int] = {}
    for entry in snap.entries:
        if not entry.active(now) or (entry.expires is not None and entry.expires - now < GRANT_END_MARGIN):
            continue
        # In force at `now` and not at the margin's last second: the window
        # closes within the margin. Nothing can close and open again in
        # between: a schedule stays in or out of force a minute at least.
        if entry.schedule is not None and not entry.schedule.active(now + GRANT_END_MARGIN - 1):
            continue
        if claims.scope_things is not None and entry.thing not in claims.scope_things:
            continue
        if claims.scope_group is not None and entry.group != claims.scope_group:
            continue
        levels[entry.thing] = max(levels.get(entry.thing, 0), entry.level)
    return levels


def revoked(snap: snapshot.Snapshot, claims: tokens.Claims) -> bool:
    """Whether the token was issued before the principal's cut-off
    (docs/snapshots.md#the-token-cut-off). A token whose issue time is
    unknown is taken as issued before it."""
    if snap.cutoff is None:
        return False
    return claims.issued_at is None or claims.issued_at < snap.cutoff


def lifetimes(snap: snapshot.Snapshot, claims: tokens.Claims, now: int, config: Config) -> tuple[int, int]:
    """(refresh, disconnect) in seconds, as docs/decisions/0007-exact-ends.md
    decides: the connection ends exactly at the token's expiry, and no
    refresh lands in the token's last MIN_TTL + REFRESH_SLACK seconds."""
    until_expiry = claims.expires - now
    # Never clamped upwards: every accepted call has at least MIN_TTL left.
    disconnect = min(config.disconnect_seconds, until_expiry)
    return refresh_after(snap, until_expiry=until_expiry, now=now, config=config), disconnect


def refresh_after(snap: snapshot.Snapshot, *, until_expiry: int, now: int, config: Config) -> int:
    """The next start or end of a grant (or of a window of its schedule),
    or the configured refresh, within AWS's bounds; moved to the token's
    expiry when the call it schedules would find too little of the token
    left to be accepted."""
    wanted = config.refresh_seconds
    # AWS's shortest refresh is MIN_TTL, so at the default refresh no change
    # can make it sooner, and finding the next one (costly for schedules) is skipped.
    if wanted > MIN_TTL and (next_change := snap.next_change(now)) is not None:
        wanted = min(wanted, next_change - now)
    refresh = _clamp(wanted)
    if until_expiry - refresh >= MIN_TTL + REFRESH_SLACK:
        return refresh
    if until_expiry <= MAX_TTL:
        # The disconnect ends the connection at expiry, before this call is made.
        return until_expiry
    # Expiry is beyond AWS's longest refresh: call back while enough is left.
    return until_expiry - (MIN_TTL + REFRESH_SLACK)


def _clamp(seconds: int) -> int:
    return max(MIN_TTL, min(MAX_TTL, seconds))


def principal_id(claims: tokens.Claims) -> str:
    """Alphanumeric and at most 128 characters, as AWS requires, and the same
    for every connection of one principal. Thing names carry `:_-`, so a
    device's id is a digest of its name."""
    if claims.kind == snapshot.USER:
        return f"u{claims.tenant}x{claims.principal}"
    digest = hashlib.sha256(claims.principal.encode()).hexdigest()[:40]
    return f"d{claims.tenant}x{digest}"
