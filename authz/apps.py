from django.apps import AppConfig


def _record_in_outbox(change) -> None:
    """The snapshot outbox as an access-change receiver (devices/access.py);
    a narrowing also bumps the disconnect outbox and joins the write's
    receipt, and revoked tokens get their cut-off (docs/live-access.md)."""
    from django.utils import timezone

    from .live import cutoffs, receipts
    from .live import outbox as cut_outbox
    from .snapshots import outbox

    now = timezone.now()
    devices = set(change.devices)
    if change.issued_tokens_revoked:
        devices |= cutoffs.devices_with_tokens_issued_by(tenant_id=change.tenant_id, users=change.users, now=now)
    if change.tokens_revoked:
        cutoffs.set_cutoffs(tenant_id=change.tenant_id, users=change.users, devices=devices, now=now)
    ids = outbox.record(tenant_id=change.tenant_id, users=change.users, devices=devices)
    if change.narrowed or change.tokens_revoked:
        cuts = cut_outbox.record(snapshot_ids=ids)
        receipts.attach(tenant_id=change.tenant_id, actor_id=change.actor_id, cuts=cuts)


def _receipt_body():
    from .live.api import receipt_body

    return receipt_body()


class AuthzConfig(AppConfig):
    name = "authz"
    verbose_name = "Authorization snapshots"

    def ready(self):
        from devices import access

        from . import checks  # noqa: F401  (checks registers itself)

        access.connect(_record_in_outbox)
        # The devices API answers a narrowing with its receipt (docs/api.md#receipts).
        access.show_receipts_with(_receipt_body)
