from django.apps import AppConfig


class AuthzConfig(AppConfig):
    name = "authz"
    verbose_name = "Authorization snapshots"

    def ready(self):
        from devices import access

        from . import outbox

        access.listen(outbox.record)
