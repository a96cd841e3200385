"""Where services report whose access a write has changed.

`devices` must not import `authz` (authz depends on devices), so receivers
connect here when Django starts: the snapshot outbox today (docs/snapshots.md),
others later. Every receiver runs inside the writer's transaction, so what
it records commits or rolls back with the write; one that raises refuses
the write. Reporting with nobody listening is an error, not a no-op: a
change that reaches no outbox would never reach the authorizer.
"""
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass


@dataclass(frozen=True)
class AccessChange:
    """Users (by id) and devices (by thing name) of one tenant whose access
    changed. `narrowed` is True when some access may have been removed or
    reduced, False when the write only added to it; narrowing also ends the
    principals' live connections (docs/live-access.md). `tokens_revoked`:
    every token issued to them until now stops working; `issued_tokens_revoked`:
    so does every device token these users issued (they lost the authority
    to). `actor_id` is whoever made the change (None: the platform itself,
    such as a share's end)."""

    tenant_id: int
    users: frozenset[int]
    devices: frozenset[str]
    narrowed: bool
    tokens_revoked: bool = False
    issued_tokens_revoked: bool = False
    actor_id: int | None = None


Receiver = Callable[[AccessChange], None]

_receivers: list[Receiver] = []


def connect(receiver: Receiver) -> None:
    """Idempotent: an app's ready() may run more than once."""
    if receiver not in _receivers:
        _receivers.append(receiver)


def disconnect(receiver: Receiver) -> None:
    if receiver in _receivers:
        _receivers.remove(receiver)


def changed(*, actor, tenant_id: int, users: Iterable[int] = (), devices: Iterable[str] = (), narrowed: bool,
            tokens_revoked: bool = False, issued_tokens_revoked: bool = False) -> None:
    """Report a change `actor` made in the current transaction to every receiver."""
    change = AccessChange(tenant_id=tenant_id, users=frozenset(users), devices=frozenset(devices), narrowed=narrowed,
                          tokens_revoked=tokens_revoked, issued_tokens_revoked=issued_tokens_revoked,
                          actor_id=getattr(actor, "pk", None))
    if not change.users and not change.devices:
        return
    if not _receivers:
        raise RuntimeError("No outbox listens for access changes; is 'authz' in INSTALLED_APPS?")
    for receiver in tuple(_receivers):
        receiver(change)


# What a write did to live connections is authz's to say (its receipt,
# docs/api.md#receipts); a view of the devices API that answers with
# it wraps the write in `receipt()`, and authz connects the source at start.
ReceiptSource = Callable[[], AbstractContextManager[Callable[[], dict | None]]]

_receipt_source: list[ReceiptSource] = []


def show_receipts_with(source: ReceiptSource) -> None:
    _receipt_source[:] = [source]


@contextmanager
def receipt():
    """Yields a function that, called after the block, gives the receipt of
    the writes made inside it as the API shows it (None: nothing narrowed)."""
    if not _receipt_source:
        yield lambda: None
        return
    with _receipt_source[0]() as body:
        yield body
