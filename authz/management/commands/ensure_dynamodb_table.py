"""Create the snapshot table (with its TTL attribute) if it is missing."""
from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from authz.snapshots import store


class Command(BaseCommand):
    help = "Create the DynamoDB snapshot table and enable TTL when missing; safe to run again."

    def handle(self, *args, **options):
        try:
            done = store.ensure_table()
        except (BotoCoreError, ClientError, TimeoutError) as exc:
            raise CommandError(f"DynamoDB table {settings.DYNAMODB_TABLE}: {exc}") from None
        for line in done:
            self.stdout.write(line)
        self.stdout.write(f"Table {settings.DYNAMODB_TABLE} is ready" + ("" if done else " (nothing to do)") + ".")
