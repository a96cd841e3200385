from django.apps import AppConfig


class AuthzConfig(AppConfig):
    name = "authz"
    verbose_name = "Authorization snapshots"

    def ready(self):
        from devices import access

        from . import checks  # noqa: F401  (checks registers itself)
        from .snapshots import outbox

        access.listen(outbox.record)
