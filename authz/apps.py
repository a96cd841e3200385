from django.apps import AppConfig


def _record_in_outbox(change) -> None:
    """The snapshot outbox as an access-change receiver (devices/access.py)."""
    from .snapshots import outbox

    outbox.record(tenant_id=change.tenant_id, users=change.users, devices=change.devices)


class AuthzConfig(AppConfig):
    name = "authz"
    verbose_name = "Authorization snapshots"

    def ready(self):
        from devices import access

        from . import checks  # noqa: F401  (checks registers itself)

        access.connect(_record_in_outbox)
