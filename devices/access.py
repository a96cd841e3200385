"""Where services report whose access a write has changed.

`devices` must not import `authz` (authz depends on devices), so the snapshot
outbox registers itself here when Django starts. Reporting with nobody
listening is an error, not a no-op: a change that reaches no outbox would
never reach the authorizer.
"""
from collections.abc import Callable, Iterable

_recorder: Callable[..., None] | None = None


def listen(recorder: Callable[..., None]) -> None:
    global _recorder
    _recorder = recorder


def changed(*, tenant_id: int, users: Iterable[int] = (), devices: Iterable[str] = ()) -> None:
    """Users (by id) and devices (by thing name) of `tenant_id` whose access
    changed in the current transaction."""
    users, devices = set(users), set(devices)
    if not users and not devices:
        return
    if _recorder is None:
        raise RuntimeError("No outbox listens for access changes; is 'authz' in INSTALLED_APPS?")
    _recorder(tenant_id=tenant_id, users=users, devices=devices)
