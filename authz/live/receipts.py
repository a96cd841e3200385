"""Receipts (docs/live-access.md#receipts): a narrowing write gets one
receipt per tenant it touched, in its own transaction; the receipt is done
when every session cut it caused has run, and then says how many live
connections were closed, in its row and in the audit trail.

A view that wants to answer with the receipt wraps the service call in
`collecting()`.
"""
import contextvars
from contextlib import contextmanager

from django.db import transaction
from django.utils import timezone

from authz.models import AccessReceipt, ReceiptItem, SessionCut
from devices import audit
from devices.audit_actions import Action

_collected: contextvars.ContextVar[list | None] = contextvars.ContextVar("access_receipts", default=None)


@contextmanager
def collecting():
    """Yields the list of receipts the writes inside the block start."""
    found: list[AccessReceipt] = []
    token = _collected.set(found)
    try:
        yield found
    finally:
        _collected.reset(token)


def attach(*, tenant_id: int, actor_id: int | None, cuts: dict[int, int]) -> AccessReceipt:
    """Add `cuts` (cut id → version) to this transaction's receipt for the
    tenant, starting one if there is none yet."""
    receipt = _pending(tenant_id)
    if receipt is None:
        receipt = AccessReceipt.objects.create(tenant_id=tenant_id, actor_id=actor_id)
        # A marker among the transaction's commit callbacks: Django drops it,
        # like the receipt row, if the savepoint it was made in rolls back.
        transaction.on_commit(_Pending(receipt))
        found = _collected.get()
        if found is not None:
            found.append(receipt)
    # A fixed number of statements however many principals (a device with
    # thousands of grantees): the items are upserted in bulk.
    ReceiptItem.objects.bulk_create(
        [ReceiptItem(receipt=receipt, cut_id=cut_id, version=version) for cut_id, version in sorted(cuts.items())],
        update_conflicts=True, unique_fields=["receipt", "cut"], update_fields=["version"])
    return receipt


class _Pending:
    def __init__(self, receipt: AccessReceipt):
        self.receipt = receipt

    def __call__(self):
        pass


def _pending(tenant_id: int) -> AccessReceipt | None:
    conn = transaction.get_connection()
    for _savepoints, callback, _robust in conn.run_on_commit:
        if isinstance(callback, _Pending) and callback.receipt.tenant_id == tenant_id:
            return callback.receipt
    return None


@transaction.atomic
def settle(*, cut: SessionCut, version: int, closed: list[str]) -> list[AccessReceipt]:
    """A cut ran at `version` and closed `closed`: the receipts waiting for it
    at that version or below are settled; those with nothing left to wait for
    are done (and audited). Returns the receipts this finished."""
    now = timezone.now()
    receipt_ids = _add_closed(cut, version, closed, done_at=now)
    # Lock first, count after, in two statements: PostgreSQL refuses FOR
    # UPDATE with an aggregate, and the count must be read after the lock is
    # held, so that of two cuts settling one receipt at once the second sees
    # the first's item done and finishes it.
    locked = list(AccessReceipt.objects.select_for_update().filter(pk__in=receipt_ids, finished_at__isnull=True)
                  .order_by("pk").values_list("pk", flat=True))
    still_open = set(ReceiptItem.objects.filter(receipt_id__in=locked, done_at__isnull=True)
                     .values_list("receipt_id", flat=True))
    finished = list(AccessReceipt.objects.filter(pk__in=set(locked) - still_open)
                    .select_related("tenant", "actor").order_by("pk"))
    for receipt in finished:
        _finish(receipt, now)
    return finished


@transaction.atomic
def note_closed(*, cut: SessionCut, version: int, closed: list[str]) -> None:
    """A cut failed part way after closing `closed`: its retry will find them
    gone, so the receipts waiting for it count them now."""
    if closed:
        _add_closed(cut, version, closed)


def _add_closed(cut: SessionCut, version: int, closed: list[str], **fields) -> set[int]:
    """Add `closed` to the open items waiting for `cut` at `version` or
    below (and set `fields` on them); returns their receipts' ids."""
    items = list(ReceiptItem.objects.select_for_update()
                 .filter(cut=cut, version__lte=version, done_at__isnull=True).order_by("pk"))
    for item in items:
        item.client_ids = sorted(set(item.client_ids) | set(closed))
        for name, value in fields.items():
            setattr(item, name, value)
        item.save(update_fields=["client_ids", *fields])
    return {item.receipt_id for item in items}


def _finish(receipt: AccessReceipt, now) -> None:
    client_ids = sorted({c for item in receipt.items.all() for c in item.client_ids})
    receipt.finished_at, receipt.closed, receipt.client_ids = now, len(client_ids), client_ids
    receipt.save(update_fields=["finished_at", "closed", "client_ids"])
    with audit.origin("worker"):
        audit.record(actor=receipt.actor, action=Action.SESSIONS_CLOSE, obj=receipt, tenant=receipt.tenant,
                     changes={"receipt": receipt.pk, "closed": receipt.closed, "client_ids": client_ids})
