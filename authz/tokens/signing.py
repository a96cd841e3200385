"""Token-signing keys and their rotation between the authorizer's two slots
(docs/signing-keys.md): bootstrap → stage → promote → retire, driven by `rotate`.

How a step survives a crash at any point:

1. The step (new key, state change, audit event, `desired_version` bump)
   commits in one transaction, under the keyring row lock.
2. Publishing is a separate step, also under the lock: it writes the key set
   the database holds *now* to the DynamoDB key item (conditional on the
   version) and to the AWS IoT authorizer, then records `published_version`
   and audits it. Every entry point publishes whatever lags before and after
   its own step.

A crash between 1 and 2 leaves the database ahead: the next run publishes.
A crash after the external writes and before 2 commits leaves the item ahead
of what the database knows it published: the next run writes the same
version again (the item already holds it) and the same key map to IoT, both
harmless. Both in-between states are safe for tokens: a staged key already
verifies, so an unpublished promote cannot strand new tokens, and a retired
key has been out of use for longer than any token lives.

The lock is `SELECT … FOR UPDATE NOWAIT` on the one keyring row: a second
runner gets `RotationInProgress` at once instead of queueing behind a slow AWS
call. Publishing holds it through the AWS calls, so two publications (or a
step and a publication) never interleave and AWS IoT never ends up with an
older key set than the table.
"""
from __future__ import annotations

import base64
import functools
import hashlib
import json
import logging
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from botocore.exceptions import BotoCoreError, ClientError
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.conf import settings
from django.db import OperationalError, transaction
from django.utils import timezone

from authz.models import SigningKey, SigningKeyring, hybrid_clock
from authz.snapshots import store
from devices import audit
from lambda_bridge import keys

from . import iot

log = logging.getLogger(__name__)

MIN_BITS = 2048
# A request that read the old key just before a promote may sign a moment
# after it, and clocks drift (the authorizer's nbf/iat leeway is at most
# 300 s): retire waits this much longer than the longest token lifetime.
RETIRE_MARGIN_SECONDS = 300

BOOTSTRAP, STAGE, PROMOTE, RETIRE = "bootstrap", "stage", "promote", "retire"


class SigningError(Exception):
    """A one-line reason, fit for an operator; nothing was changed."""


class NotYetSafe(SigningError):
    """The step would break tokens or connections if taken now; `--force` takes it anyway."""

    def __init__(self, message: str, due_at: datetime | None = None):
        super().__init__(message)
        self.due_at = due_at


class RotationInProgress(SigningError):
    pass


class PublishError(SigningError):
    pass


# --- keys -------------------------------------------------------------------------


def jwk_thumbprint(public_key: rsa.RSAPublicKey) -> str:
    """RFC 7638: SHA-256 of the required JWK members in lexicographic order,
    without whitespace, base64url without padding."""
    numbers = public_key.public_numbers()
    members = {"e": _b64url_uint(numbers.e), "kty": "RSA", "n": _b64url_uint(numbers.n)}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True)
    return _b64url(hashlib.sha256(canonical.encode("ascii")).digest())


def _b64url_uint(value: int) -> str:
    return _b64url(value.to_bytes((value.bit_length() + 7) // 8 or 1, "big"))


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _fernet() -> MultiFernet:
    configured = settings.SIGNING_KEY_ENCRYPTION_KEYS
    if not configured:
        raise SigningError("SIGNING_KEY_ENCRYPTION_KEYS is not set: private keys cannot be encrypted at rest")
    try:
        return MultiFernet([Fernet(k) for k in configured])
    except ValueError:
        raise SigningError("SIGNING_KEY_ENCRYPTION_KEYS holds a value that is not a Fernet key") from None


def _new_key(*, slot: str, state: str, now: datetime) -> SigningKey:
    bits = settings.SIGNING_KEY_BITS
    if bits < MIN_BITS:
        # AWS IoT's signature check and the authorizer both demand 2048 bits or more.
        raise SigningError(f"SIGNING_KEY_BITS is {bits}; signing keys need at least {MIN_BITS} bits")
    private = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    public_pem = private.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return SigningKey.objects.create(
        slot=slot, kid=jwk_thumbprint(private.public_key()), bits=bits, public_pem=public_pem,
        private_key_encrypted=_fernet().encrypt(pem).decode("ascii"), state=state, created_at=now,
        staged_at=now, activated_at=now if state == keys.ACTIVE else None,
    )


@dataclass(frozen=True)
class ActiveSigningKey:
    kid: str
    slot: str
    private_key: rsa.RSAPrivateKey = field(repr=False)


def active_signing_key() -> ActiveSigningKey:
    """The key new tokens are signed with (RS256, header `kid`)."""
    key = SigningKey.objects.filter(state=keys.ACTIVE).only("kid", "slot", "private_key_encrypted").first()
    if key is None:
        raise SigningError("no active signing key: run `manage.py signing_keys rotate` to bootstrap one")
    return ActiveSigningKey(kid=key.kid, slot=key.slot, private_key=_decrypt(key.kid, key.private_key_encrypted))


@functools.lru_cache(maxsize=4)
def _decrypt(kid: str, token: str) -> rsa.RSAPrivateKey:
    # Cached: loading a PEM runs RSA's key checks, too slow to repeat per token.
    try:
        pem = _fernet().decrypt(token.encode("ascii"))
    except InvalidToken:
        raise SigningError(f"cannot decrypt the private key of {kid}: none of SIGNING_KEY_ENCRYPTION_KEYS "
                           f"is the key it was encrypted with") from None
    return serialization.load_pem_private_key(pem, password=None)


# --- what is due ----------------------------------------------------------------


def _max_token_lifetime() -> int:
    # Never shorter than a lifetime in force, even if one setting was changed alone.
    return max(settings.TOKEN_MAX_LIFETIME_SECONDS, settings.USER_TOKEN_LIFETIME_SECONDS,
               settings.DEVICE_TOKEN_LIFETIME_SECONDS)


@dataclass(frozen=True)
class Ring:
    """The live (not retired) keys: at most one per slot and state."""

    live: tuple[SigningKey, ...]

    @classmethod
    def load(cls) -> Ring:
        return cls(tuple(SigningKey.objects.exclude(state=keys.RETIRED).order_by("slot")))

    def in_state(self, state: str) -> SigningKey | None:
        return next((k for k in self.live if k.state == state), None)

    def in_slot(self, slot: str) -> SigningKey | None:
        return next((k for k in self.live if k.slot == slot), None)


@dataclass(frozen=True)
class NextStep:
    step: str
    slot: str
    due_at: datetime | None  # None: due as soon as it can run
    reason: str

    def due(self, now: datetime) -> bool:
        return self.due_at is None or self.due_at <= now

    def describe(self, now: datetime) -> str:
        when = "now" if self.due(now) else f"at {format_when(self.due_at)} (in {format_duration(self.due_at - now)})"
        return f"{self.step} {self.slot} {when}: {self.reason}"


def next_step(ring: Ring, now: datetime) -> NextStep:
    active, staged, retiring = (ring.in_state(s) for s in (keys.ACTIVE, keys.STAGED, keys.RETIRING))
    if active is None:
        return NextStep(BOOTSTRAP, keys.SLOTS[0], None, "no active key yet")
    if retiring is not None:
        due = retiring.retiring_at + timedelta(seconds=_max_token_lifetime() + RETIRE_MARGIN_SECONDS)
        return NextStep(RETIRE, retiring.slot, due, "once the last token it signed has expired")
    if staged is not None:
        if staged.published_at is None:
            return NextStep(PROMOTE, staged.slot, now + timedelta(seconds=settings.SIGNING_PROPAGATION_SECONDS),
                            "once published and propagated (not published yet)")
        due = staged.published_at + timedelta(seconds=settings.SIGNING_PROPAGATION_SECONDS)
        return NextStep(PROMOTE, staged.slot, due, "once every authorizer has seen it")
    due = active.activated_at + timedelta(days=settings.SIGNING_ROTATION_DAYS)
    return NextStep(STAGE, _other(active.slot), due,
                    f"the active key is rotated every {settings.SIGNING_ROTATION_DAYS:g} days")


def _other(slot: str) -> str:
    return keys.SLOTS[1] if slot == keys.SLOTS[0] else keys.SLOTS[0]


# --- the steps --------------------------------------------------------------------


@dataclass
class StepResult:
    step: str | None
    message: str
    changed: bool = False
    kid: str = ""
    published_version: int | None = None  # set when this call published

    def __str__(self) -> str:
        return self.message


def bootstrap(*, actor, now: datetime | None = None, dry_run: bool = False) -> StepResult:
    return _run(BOOTSTRAP, actor=actor, now=now, force=False, dry_run=dry_run)


def stage(*, actor, now: datetime | None = None, dry_run: bool = False) -> StepResult:
    return _run(STAGE, actor=actor, now=now, force=False, dry_run=dry_run)


def promote(*, actor, force: bool = False, now: datetime | None = None, dry_run: bool = False) -> StepResult:
    return _run(PROMOTE, actor=actor, now=now, force=force, dry_run=dry_run)


def retire(*, actor, force: bool = False, now: datetime | None = None, dry_run: bool = False) -> StepResult:
    return _run(RETIRE, actor=actor, now=now, force=force, dry_run=dry_run)


def rotate(*, actor, force: bool = False, now: datetime | None = None, dry_run: bool = False) -> StepResult:
    """Publish whatever lags, then take the one step that is due (with
    `force`: the next step, due or not), then publish it. Running it again
    before anything else is due changes nothing."""
    return _run(None, actor=actor, now=now, force=force, dry_run=dry_run)


def _run(wanted: str | None, *, actor, now, force: bool, dry_run: bool) -> StepResult:
    now = now or timezone.now()
    if dry_run:
        plan = _plan(wanted, Ring.load(), now, force)
        return StepResult(plan.step if isinstance(plan, NextStep) else None,
                          f"would {plan.describe(now)}" if isinstance(plan, NextStep) else plan)
    # rotate (beat, hourly) also checks that the item is still there: a
    # recreated table or a restored backup must not wait for the next step.
    pending = publish(actor=actor, now=now, verify=wanted is None)
    with _locked() as ring_row:
        ring = Ring.load()
        plan = _plan(wanted, ring, now, force)
        if isinstance(plan, str):
            result = StepResult(None, plan)
        else:
            result = _apply(plan, ring, ring_row, actor=actor, now=now, forced=force and not plan.due(now))
    published = publish(actor=actor, now=now, wait=True)
    result.published_version = published or pending
    return result


def _plan(wanted: str | None, ring: Ring, now: datetime, force: bool) -> NextStep | str:
    """The step to take now, or why there is nothing to do (a string).
    Raises NotYetSafe (or SigningError) when the wanted step cannot be taken."""
    upcoming = next_step(ring, now)
    if wanted is None:
        if upcoming.due(now) or force:
            return upcoming
        return f"nothing due; next: {upcoming.describe(now)}"
    if wanted == BOOTSTRAP:
        return upcoming if upcoming.step == BOOTSTRAP else "nothing to do: a key is already active"
    if upcoming.step == BOOTSTRAP:
        raise SigningError("no active key yet: `signing_keys rotate` bootstraps slot A first")
    if wanted == STAGE:
        staged, retiring = ring.in_state(keys.STAGED), ring.in_state(keys.RETIRING)
        if staged is not None:
            return f"nothing to do: slot {staged.slot} already holds staged key {staged.kid}"
        if retiring is not None:
            raise SigningError(f"slot {retiring.slot} still holds retiring key {retiring.kid}; retire it first "
                               f"(due at {format_when(upcoming.due_at)}, or `retire --force`)")
        # An operator may stage before the period is up; that is always safe.
        return NextStep(STAGE, upcoming.slot, None, "requested")
    if wanted != upcoming.step:
        return f"nothing to do: no {'staged' if wanted == PROMOTE else 'retiring'} key"
    if not upcoming.due(now) and not force:
        raise NotYetSafe(f"not yet safe to {upcoming.describe(now)}; --force overrides", upcoming.due_at)
    return upcoming


def _apply(plan: NextStep, ring: Ring, ring_row: SigningKeyring, *, actor, now: datetime, forced: bool) -> StepResult:
    if plan.step in (BOOTSTRAP, STAGE):
        key = _new_key(slot=plan.slot, state=keys.ACTIVE if plan.step == BOOTSTRAP else keys.STAGED, now=now)
        changes = {"slot": key.slot, "kid": key.kid, "bits": key.bits, "state": key.state}
        done = (f"bootstrapped slot {key.slot} with active key {key.kid}" if plan.step == BOOTSTRAP
                else f"staged key {key.kid} in slot {key.slot}")
    elif plan.step == PROMOTE:
        key, old = ring.in_state(keys.STAGED), ring.in_state(keys.ACTIVE)
        old.state, old.retiring_at = keys.RETIRING, now
        old.save(update_fields=["state", "retiring_at"])
        key.state, key.activated_at = keys.ACTIVE, now
        key.save(update_fields=["state", "activated_at"])
        changes = {"slot": key.slot, "kid": key.kid, "retiring": {"slot": old.slot, "kid": old.kid}}
        done = f"promoted {key.kid} in slot {key.slot}; {old.kid} in slot {old.slot} is retiring"
    else:
        key = ring.in_state(keys.RETIRING)
        key.state, key.retired_at = keys.RETIRED, now
        # The private half is of no further use; the row stays as history.
        key.private_key_encrypted = ""
        key.save(update_fields=["state", "retired_at", "private_key_encrypted"])
        changes = {"slot": key.slot, "kid": key.kid}
        done = f"retired {key.kid} from slot {key.slot}"
    if forced:
        changes["forced"] = True
        done += " (forced)"
    _bump(ring_row, now)
    audit.record(actor=actor, action=f"signing_key.{plan.step}",
                 obj=key, tenant=None, changes={**changes, "step": plan.step, "version": ring_row.desired_version})
    log.info("signing keys: %s", done)
    return StepResult(plan.step, done, changed=True, kid=key.kid)


def _bump(ring_row: SigningKeyring, now: datetime) -> None:
    ring_row.desired_version = max(ring_row.desired_version + 1, ring_row.published_version + 1, hybrid_clock())
    ring_row.changed_at = now
    ring_row.save(update_fields=["desired_version", "changed_at"])


@contextmanager
def _locked(*, wait: bool = False):
    with transaction.atomic():
        try:
            row = SigningKeyring.objects.select_for_update(nowait=not wait).filter(pk=SigningKeyring.SINGLETON).first()
            if row is None:
                SigningKeyring.objects.bulk_create([SigningKeyring()], ignore_conflicts=True)
                row = SigningKeyring.objects.select_for_update(nowait=not wait).get(pk=SigningKeyring.SINGLETON)
        except OperationalError:
            raise RotationInProgress("rotation in progress: another runner holds the signing-key lock; "
                                     "try again shortly") from None
        yield row


# --- publishing -----------------------------------------------------------------


def publish(*, actor, now: datetime | None = None, wait: bool = False, verify: bool = False) -> int | None:
    """Write the database's key set to the key item and the authorizer when
    the published version lags (or, with `verify`, when the item is missing
    or older than what was published); returns the version published, None
    when nothing lagged. A failure is recorded on the keyring row and raised."""
    now = now or timezone.now()
    error = None
    with _locked(wait=wait) as ring_row:
        if ring_row.in_sync and not (verify and ring_row.desired_version and _item_behind(ring_row)):
            return None
        live = Ring.load().live
        try:
            version = _write_item(live, ring_row)
            authorizer = settings.IOT_AUTHORIZER_NAME
            if authorizer:
                iot.gateway().update_authorizer_keys(authorizer, {k.slot: k.public_pem for k in live})
        except (iot.IotError, PublishError) as exc:
            error = str(exc)
            ring_row.attempts += 1
            ring_row.last_error = error[:500]
            ring_row.save(update_fields=["attempts", "last_error"])
        else:
            _mark_published(ring_row, live, version, actor=actor, now=now)
    if error:
        log.warning("signing keys: publishing failed: %s", error)
        raise PublishError(f"publishing the signing keys failed: {error}")
    return version


def _item_behind(ring_row: SigningKeyring) -> bool:
    try:
        item = store.get_item(keys.ITEM_KEY)
    except (ClientError, BotoCoreError) as exc:
        raise PublishError(f"DynamoDB: cannot read the key item ({exc.__class__.__name__})") from None
    stored = int(item["v"]["N"]) if item and "v" in item else 0
    if stored < ring_row.published_version:
        log.warning("signing keys: the key item holds version %d, not the published %d; publishing again",
                    stored, ring_row.published_version)
        return True
    return False


def keyring_for(live, version: int) -> keys.Keyring:
    active = next((k.slot for k in live if k.state == keys.ACTIVE), None)
    return keys.Keyring(version=version, active=active,
                        slots={k.slot: keys.KeySlot(kid=k.kid, pem=k.public_pem, state=k.state) for k in live})


def _write_item(live, ring_row: SigningKeyring) -> int:
    """Conditional on the version, like snapshots. An item at our version is
    the same publication landed before a crash; an item ahead of us (a
    database restored from backup) is overtaken, since the database is the
    truth about which keys exist."""
    for _attempt in range(2):
        version = ring_row.desired_version
        try:
            store.client().put_item(
                TableName=settings.DYNAMODB_TABLE, Item=keys.to_item(keyring_for(live, version)),
                ConditionExpression="attribute_not_exists(pk) OR v < :v",
                ExpressionAttributeValues={":v": {"N": str(version)}},
            )
            return version
        except ClientError as exc:
            error = exc.response.get("Error", {})
            if error.get("Code") != "ConditionalCheckFailedException":
                raise PublishError(f"DynamoDB {error.get('Code', '?')}: {error.get('Message', '')}"[:300]) from None
        except BotoCoreError as exc:
            raise PublishError(f"DynamoDB {exc.__class__.__name__}: {exc}"[:300]) from None
        try:
            stored = int(store.get_item(keys.ITEM_KEY)["v"]["N"])
        except (ClientError, BotoCoreError, KeyError, TypeError) as exc:
            raise PublishError(f"DynamoDB: cannot read the key item back ({exc.__class__.__name__})") from None
        if stored == version:
            return version
        ring_row.desired_version = max(ring_row.desired_version, stored) + 1
        ring_row.save(update_fields=["desired_version"])
    raise PublishError("DynamoDB: the key item keeps moving ahead; is another deployment writing it?")


def _mark_published(ring_row: SigningKeyring, live, version: int, *, actor, now: datetime) -> None:
    ring_row.published_version = version
    ring_row.published_at = now
    ring_row.attempts = 0
    ring_row.last_error = ""
    ring_row.save(update_fields=["published_version", "published_at", "attempts", "last_error"])
    SigningKey.objects.filter(pk__in=[k.pk for k in live], published_at__isnull=True).update(published_at=now)
    audit.record(actor=actor, action="signing_key.publish", obj=ring_row, tenant=None, changes={
        "version": version,
        "slots": {k.slot: {"kid": k.kid, "state": k.state} for k in live},
        "authorizer": settings.IOT_AUTHORIZER_NAME,
    })


# --- reading ----------------------------------------------------------------------


@dataclass(frozen=True)
class KeyStatus:
    slot: str
    kid: str
    state: str
    bits: int
    created_at: datetime
    age: timedelta
    next_step: str  # "" for a retired key
    next_at: datetime | None


@dataclass(frozen=True)
class Status:
    keys: list[KeyStatus]
    next: NextStep
    desired_version: int
    published_version: int
    published_at: datetime | None
    last_error: str
    authorizer: str
    now: datetime

    @property
    def in_sync(self) -> bool:
        return self.published_version >= self.desired_version


def status(*, now: datetime | None = None, history: int = 3) -> Status:
    """Live keys with the step that ends each one's current state, plus the
    last `history` retired keys."""
    now = now or timezone.now()
    ring = Ring.load()
    upcoming = next_step(ring, now)
    rows = []
    for key in ring.live:
        step, at = "", None
        if upcoming.slot == key.slot and upcoming.step in (PROMOTE, RETIRE):
            step, at = upcoming.step, upcoming.due_at
        elif key.state == keys.ACTIVE:
            step, at = ((f"stage successor in {upcoming.slot}", upcoming.due_at) if upcoming.step == STAGE
                        else (f"retiring at the promote of {_other(key.slot)}", None) if upcoming.step == PROMOTE
                        else ("", None))
        rows.append(_key_status(key, now, step, at))
    retired = SigningKey.objects.filter(state=keys.RETIRED).order_by("-retired_at", "-id")[:history]
    rows += [_key_status(key, now, "", None) for key in retired]
    ring_row = SigningKeyring.objects.filter(pk=SigningKeyring.SINGLETON).first() or SigningKeyring()
    return Status(keys=rows, next=upcoming, desired_version=ring_row.desired_version,
                  published_version=ring_row.published_version, published_at=ring_row.published_at,
                  last_error=ring_row.last_error, authorizer=settings.IOT_AUTHORIZER_NAME, now=now)


def _key_status(key: SigningKey, now: datetime, step: str, at: datetime | None) -> KeyStatus:
    return KeyStatus(slot=key.slot, kid=key.kid, state=key.state, bits=key.bits, created_at=key.created_at,
                     age=now - key.created_at, next_step=step, next_at=at)


def format_when(when: datetime | None) -> str:
    return "-" if when is None else when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def format_duration(delta: timedelta) -> str:
    seconds = max(int(delta.total_seconds()), 0)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {seconds}s"
    return f"{seconds}s"
