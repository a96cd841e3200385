from django.apps import AppConfig


class DevicesConfig(AppConfig):
    name = "devices"
    verbose_name = "Devices and sharing"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from . import signin  # noqa: F401  (connects the sign-in audit receivers)
