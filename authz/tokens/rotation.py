"""The rotation of the token-signing keys between the authorizer's two slots
(docs/signing-keys.md): bootstrap → stage → promote → retire, driven by `rotate`.

How a step survives a crash at any point:

1. The step (new key, state change, audit event, `desired_version` bump)
   commits in one transaction, under the keyring row lock.
2. Publishing is a separate step, also under the lock: it writes the key set
   the database holds *now* to the DynamoDB key item (conditional on the
   version) and to the AWS IoT authorizer, then records `pushed_version`
   and audits it. Every entry point publishes whatever lags before and after
   its own step.

A crash between 1 and 2 leaves the database ahead: the next run publishes.
A crash after the external writes and before 2 commits leaves the item ahead
of what the database knows it published: the next run writes the same
version again (the item already holds it) and the same key map to IoT, both
harmless. Both in-between states are safe for tokens: a staged key already
verifies, so an unpublished promote cannot strand new tokens, and a retired
key has been out of use for longer than any token lives.

The lock (signing_keys.locked) is `SELECT … FOR UPDATE NOWAIT` on the one
keyring row. Publishing holds it through the AWS calls, so two publications (or a
step and a publication) never interleave and AWS IoT never ends up with an
older key set than the table.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.utils import timezone

from authz.models import SigningKey, SigningKeyring
from devices import audit
from lambda_bridge import keys

from . import publication, signing_keys
from .signing_keys import Ring, SigningError

log = logging.getLogger(__name__)

# A request that read the old key just before a promote may sign a moment
# after it, and clocks drift (the authorizer's nbf/iat leeway is at most
# 300 s): retire waits this much longer than the longest token lifetime.
RETIRE_MARGIN_SECONDS = 300

BOOTSTRAP, STAGE, PROMOTE, RETIRE = "bootstrap", "stage", "promote", "retire"


class NotYetSafe(SigningError):
    """The step would break tokens or connections if taken now; `--force` takes it anyway."""

    def __init__(self, message: str, due_at: datetime | None = None):
        super().__init__(message)
        self.due_at = due_at



# --- what is due ----------------------------------------------------------------


def _max_token_lifetime() -> int:
    # Never shorter than a lifetime in force, even if one setting was changed alone.
    return max(settings.TOKEN_MAX_LIFETIME_SECONDS, settings.USER_TOKEN_LIFETIME_SECONDS,
               settings.DEVICE_TOKEN_LIFETIME_SECONDS)



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
    if not active.compact_kid:
        # Made before compact credentials: until a key with a compact half is
        # promoted, no compact token can be issued (docs/signing-keys.md#the-compact-half).
        return NextStep(STAGE, _other(active.slot), None, "the active key has no compact half")
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
    pending = publication.publish(actor=actor, now=now, verify=wanted is None)
    with signing_keys.locked() as ring_row:
        ring = Ring.load()
        plan = _plan(wanted, ring, now, force)
        if isinstance(plan, str):
            result = StepResult(None, plan)
        else:
            result = _apply(plan, ring, ring_row, actor=actor, now=now, forced=force and not plan.due(now))
    published = publication.publish(actor=actor, now=now, wait=True)
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
        state = keys.ACTIVE if plan.step == BOOTSTRAP else keys.STAGED
        key = signing_keys.new_key(slot=plan.slot, state=state, now=now)
        changes = {"slot": key.slot, "kid": key.kid, "compact_kid": key.compact_kid, "bits": key.bits,
                   "state": key.state}
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
        # The private halves are of no further use; the row stays as history.
        key.private_key_encrypted = key.compact_private_encrypted = ""
        key.save(update_fields=["state", "retired_at", "private_key_encrypted", "compact_private_encrypted"])
        changes = {"slot": key.slot, "kid": key.kid}
        done = f"retired {key.kid} from slot {key.slot}"
    if forced:
        changes["forced"] = True
        done += " (forced)"
    ring_row.bump(now=now)
    audit.record(actor=actor, action=f"signing_key.{plan.step}",
                 obj=key, tenant=None, changes={**changes, "step": plan.step, "version": ring_row.desired_version})
    log.info("signing keys: %s", done)
    return StepResult(plan.step, done, changed=True, kid=key.kid)



# --- reading ----------------------------------------------------------------------


@dataclass(frozen=True)
class KeyStatus:
    slot: str
    kid: str
    compact_kid: str  # "" for a key made before compact tokens
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
    pushed_version: int  # the keyring's versioned-outbox fields
    pushed_at: datetime | None
    in_sync: bool
    last_error: str
    authorizer: str
    now: datetime


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
                  pushed_version=ring_row.pushed_version, pushed_at=ring_row.pushed_at, in_sync=ring_row.in_sync,
                  last_error=ring_row.last_error, authorizer=settings.IOT_AUTHORIZER_NAME, now=now)


def _key_status(key: SigningKey, now: datetime, step: str, at: datetime | None) -> KeyStatus:
    return KeyStatus(slot=key.slot, kid=key.kid, compact_kid=key.compact_kid, state=key.state, bits=key.bits,
                     created_at=key.created_at,
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
