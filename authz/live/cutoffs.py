"""Token cut-offs (docs/live-access.md#token-cut-offs): per principal, the
second before which its tokens were issued in vain.

Tokens carry whole-second `iat`s, so a cut-off is the second after the
revoking write: every token issued up to and during that second is refused.
A token issued after the write but within the same second would be refused
too, so issuance dates such a token at the cut-off itself (`issue_floor`).
"""
from datetime import datetime, timedelta

from authz.models import IssuedCredential, TokenCutoff
from lambda_bridge import snapshot


def cutoff_after(now: datetime) -> datetime:
    """The whole second after `now`."""
    return now.replace(microsecond=0) + timedelta(seconds=1)


def set_cutoffs(*, tenant_id: int, users=(), devices=(), now: datetime) -> None:
    """Revoke every token issued to these principals up to `now`. A later
    cut-off already set stays (cut-offs only move forward)."""
    not_before = cutoff_after(now)
    for kind, principal in sorted({(snapshot.USER, str(u)) for u in users} | {(snapshot.DEVICE, d) for d in devices}):
        row, created = TokenCutoff.objects.select_for_update().get_or_create(
            tenant_id=tenant_id, kind=kind, principal=principal, defaults={"not_before": not_before})
        if not created and row.not_before < not_before:
            row.not_before = not_before
            row.save(update_fields=["not_before"])


def devices_with_tokens_issued_by(*, tenant_id: int, users, now: datetime) -> set[str]:
    """Thing names holding an unexpired token that one of `users` issued.
    A cut-off is per principal, so revoking these ends the device's other
    tokens too; its owner issues a new one (docs/live-access.md#token-cut-offs)."""
    issued = IssuedCredential.objects.filter(tenant_id=tenant_id, kind=snapshot.DEVICE, issued_by_id__in=users)
    return set(issued.live(now).values_list("principal", flat=True))


def cutoffs_of(*, tenant_id: int, kind: str, principals) -> dict[str, int]:
    """principal → cut-off in epoch seconds, for those that have one."""
    rows = TokenCutoff.objects.filter(tenant_id=tenant_id, kind=kind, principal__in=principals)
    return {principal: int(not_before.timestamp()) for principal, not_before in rows.values_list("principal",
                                                                                                   "not_before")}


def issue_floor(*, tenant_id: int, kind: str, principal: str) -> int | None:
    """The earliest `iat` a token issued now may carry, if a cut-off says so."""
    return cutoffs_of(tenant_id=tenant_id, kind=kind, principals=[principal]).get(principal)
