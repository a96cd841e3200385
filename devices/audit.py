"""Audit trail: one AuditEvent per write, in the writer's transaction.

Where a request came from (admin, api, command; client IP) is carried in a
context variable set by the middleware or the management command, so that
services stay free of request objects.
"""
import contextvars
from contextlib import contextmanager
from dataclasses import dataclass

from .audit_actions import KNOWN
from .models import AuditEvent

__all__ = ["build", "origin", "record", "record_many"]


@dataclass(frozen=True)
class Origin:
    source: str = ""
    ip_address: str | None = None


# Origin is frozen, so sharing one default instance is safe.
_origin: contextvars.ContextVar[Origin] = contextvars.ContextVar("audit_origin", default=Origin())  # noqa: B039


@contextmanager
def origin(source: str, ip_address: str | None = None):
    token = _origin.set(Origin(source=source, ip_address=ip_address))
    try:
        yield
    finally:
        _origin.reset(token)


def record(*, actor, action: str, obj, tenant=None, changes: dict | None = None, device_id=None) -> AuditEvent:
    event = build(actor=actor, action=action, obj=obj, tenant=tenant, changes=changes, device_id=device_id)
    event.save()
    return event


def record_many(events: list[AuditEvent]) -> None:
    """Save events made by `build` in one statement per batch (a cascade of thousands)."""
    AuditEvent.objects.bulk_create(events, batch_size=1000)


def build(*, actor, action: str, obj, tenant=None, changes: dict | None = None, device_id=None) -> AuditEvent:
    """The event `record` saves, unsaved."""
    if action not in KNOWN:
        # Checked here, not by the model: choices are not enforced on save.
        raise ValueError(f"unknown audit action {action!r}: list it in devices/audit_actions.py")
    where = _origin.get()
    return AuditEvent(
        tenant=tenant if tenant is not None else getattr(obj, "tenant", None),
        actor=actor if actor is not None and actor.pk else None,
        actor_email=getattr(actor, "email", "") or "",
        action=action,
        object_type=type(obj)._meta.model_name,
        object_id=str(obj.pk or ""),
        object_repr=str(obj)[:300],
        device_id=device_id,
        changes=_jsonable(changes or {}),
        source=where.source,
        ip_address=where.ip_address,
    )


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "pk"):
        return value.pk
    return str(value)
