"""Publishing the signing keys: the key set the database holds is written to
the DynamoDB key item (conditional on the version, like snapshots; both
halves of each key) and to the signed AWS IoT authorizer (its RSA PEMs only:
the unsigned one checks no signature), under the keyring lock (docs/signing-keys.md).

The keyring row is a versioned outbox (authz/versioned_outbox.py): a step
bumps `desired_version`, a publication records `pushed_version`.
"""
from __future__ import annotations

import logging
from datetime import datetime

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.utils import timezone

from authz.models import SigningKey, SigningKeyring
from authz.snapshots import store
from devices import audit
from devices.audit_actions import Action
from lambda_bridge import keys

from . import iot
from .signing_keys import Ring, SigningError, locked

log = logging.getLogger(__name__)


class PublishError(SigningError):
    pass


def publish(*, actor, now: datetime | None = None, wait: bool = False, verify: bool = False) -> int | None:
    """Write the database's key set to the key item and the authorizer when
    the published version lags (or, with `verify`, when the item is missing
    or older than what was published); returns the version published, None
    when nothing lagged. A failure is recorded on the keyring row and raised."""
    now = now or timezone.now()
    error = None
    with locked(wait=wait) as ring_row:
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
            SigningKeyring.objects.filter(pk=ring_row.pk).record_failure(error=error)
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
    if stored < ring_row.pushed_version:
        log.warning("signing keys: the key item holds version %d, not the published %d; publishing again",
                    stored, ring_row.pushed_version)
        return True
    return False


def keyring_for(live, version: int) -> keys.Keyring:
    active = next((k.slot for k in live if k.state == keys.ACTIVE), None)
    return keys.Keyring(version=version, active=active,
                        slots={k.slot: keys.KeySlot(kid=k.kid, pem=k.public_pem, state=k.state,
                                                    compact_kid=k.compact_kid, compact_public=k.compact_public)
                               for k in live})


def _write_item(live, ring_row: SigningKeyring) -> int:
    """Conditional on the version, like snapshots. An item at our version is
    the same publication landed before a crash; an item ahead of us (a
    database restored from backup) is overtaken, since the database is the
    truth about which keys exist."""
    for _attempt in range(2):
        version = ring_row.desired_version
        try:
            if store.put_if_newer(keys.to_item(keyring_for(live, version)), version):
                return version
        except ClientError as exc:
            error = exc.response.get("Error", {})
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
    SigningKeyring.objects.mark_pushed({ring_row.pk: version}, now=now)
    SigningKey.objects.filter(pk__in=[k.pk for k in live], published_at__isnull=True).update(published_at=now)
    audit.record(actor=actor, action=Action.SIGNING_KEY_PUBLISH, obj=ring_row, tenant=None, changes={
        "version": version,
        "slots": {k.slot: {"kid": k.kid, "compact_kid": k.compact_kid, "state": k.state} for k in live},
        "authorizer": settings.IOT_AUTHORIZER_NAME,
    })

