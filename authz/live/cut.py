"""Running session cuts: close every live connection of a principal whose
access narrowed, through AWS IoT's DeleteConnection (docs/live-access.md).

Which client ids: every unexpired token the platform issued to the principal
(IssuedCredential), and for a device its thing name, the one client id it
may use whatever issued its token. DeleteConnection does not stop a
reconnect by itself; the snapshot written before the cut (or the token
cut-off in it) is what the reconnect is judged on.
"""
import logging
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from authz.models import IssuedCredential, SessionCut
from authz.tokens import iot
from authz.versioned_outbox import full_jitter
from lambda_bridge import snapshot

from . import receipts

log = logging.getLogger(__name__)


@dataclass
class CutResult:
    done: list[int] = field(default_factory=list)
    closed: dict[int, list[str]] = field(default_factory=dict)  # cut id → client ids closed
    failed: dict[int, str] = field(default_factory=dict)
    waiting: list[int] = field(default_factory=list)  # their snapshot is not written yet


def run(ids: list[int], *, gateway: iot.IotGateway | None = None) -> CutResult:
    """Run the cuts among `ids` that lag and whose snapshot is written."""
    gateway = gateway or iot.gateway()
    now = timezone.now()
    result = CutResult()
    lagging = SessionCut.objects.filter(pk__in=ids).lagging()
    ready = list(lagging.ready().order_by("pk"))
    result.waiting = sorted(set(lagging.values_list("pk", flat=True)) - {row.pk for row in ready})
    for row in ready:
        closed: list[str] = []
        try:
            for client_id in live_client_ids(row, now=now):
                if gateway.delete_connection(client_id, clean_session=True, prevent_will=True):
                    closed.append(client_id)
        except iot.IotError as exc:
            result.failed[row.pk] = str(exc)
            SessionCut.objects.filter(pk=row.pk).record_failure(
                error=str(exc), retry_after=now + timedelta(seconds=backoff(row.attempts + 1)))
            # The retry will find these gone: their receipts count them now.
            receipts.note_closed(cut=row, version=row.desired_version, closed=closed)
            log.warning("session cut %s failed (attempt %d): %s", row, row.attempts + 1, exc)
            continue
        # Together: a cut marked done is never queued again, so its receipts
        # must settle in the same commit or never.
        with transaction.atomic():
            SessionCut.objects.mark_pushed({row.pk: row.desired_version}, now=timezone.now())
            receipts.settle(cut=row, version=row.desired_version, closed=closed)
        result.done.append(row.pk)
        result.closed[row.pk] = closed
        log.info("session cut %s: closed %d of its connections", row, len(closed))
    return result


def live_client_ids(row: SessionCut, *, now) -> list[str]:
    """The client ids that may be connected as this principal now."""
    issued = IssuedCredential.objects.filter(tenant_id=row.tenant_id, kind=row.kind, principal=row.principal)
    client_ids = set(issued.live(now).values_list("client_id", flat=True))
    if row.kind == snapshot.DEVICE:
        client_ids.add(row.principal)
    return sorted(client_ids)


def backoff(attempt: int) -> float:
    return full_jitter(attempt, base=settings.SESSION_CUT_RETRY_BASE_SECONDS,
                       cap=settings.SESSION_CUT_RETRY_MAX_SECONDS)
