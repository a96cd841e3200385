"""Make sure a superuser with known credentials exists (for `make run`)."""
import os

from django.core.management.base import BaseCommand

from devices.models import User


class Command(BaseCommand):
    help = "Create the console superuser, or reset its password; prints nothing secret unless asked."

    def add_arguments(self, parser):
        parser.add_argument("--email", default=os.environ.get("DEVSHARE_ADMIN_EMAIL", "admin@devshare.local"))
        parser.add_argument("--password", default=os.environ.get("DEVSHARE_ADMIN_PASSWORD", "devshare-admin"))
        parser.add_argument("--print", action="store_true", help="Print the credentials (local demo only).")

    def handle(self, *args, email, password, print, **options):
        user = User.objects.filter(email=email.lower()).first()
        if user is None:
            user = User.objects.create_superuser(email=email, password=password, full_name="Console admin")
            verb = "created"
        else:
            user.is_staff = user.is_superuser = user.is_active = True
            user.set_password(password)
            user.save()
            verb = "reset"
        self.stdout.write(f"Superuser {user.email} {verb}.")
        if print:
            self.stdout.write(f"  login: {user.email}\n  password: {password}")
