"""Push lagging snapshots now, or every snapshot with --all."""
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from authz.management.common import progress, tenants_named
from authz.models import PrincipalSync
from authz.snapshots import outbox
from authz.snapshots.push import PushResult, push


class Command(BaseCommand):
    help = "Push snapshots whose pushed version lags (default), or all of them (--all), inline."

    def add_arguments(self, parser):
        parser.add_argument("--tenant", action="append", metavar="SLUG", help="Only this tenant (repeatable).")
        parser.add_argument("--all", action="store_true", help="Every member and device, lagging or not.")
        parser.add_argument("--dry-run", action="store_true", help="Say what would be pushed; change nothing.")
        parser.add_argument("--batch", type=int, default=200)

    def handle(self, *args, tenant, all, dry_run, batch, **options):
        tenants = tenants_named(tenant)
        if dry_run:
            return self._dry_run(tenants, all)
        if all:
            with transaction.atomic():
                ids = outbox.record_everyone(tenants=tenants, queue=False)
        else:
            ids = list(PrincipalSync.objects.lagging().filter(tenant__in=tenants).values_list("pk", flat=True))
        ids.sort()
        total = PushResult()
        for start in range(0, len(ids), batch):
            result = push(ids[start:start + batch])
            total.written += result.written
            total.stale += result.stale
            total.failed.update(result.failed)
            progress(self.stderr, min(start + batch, len(ids)), len(ids))
        self.stdout.write(f"{len(ids)} snapshot(s): {len(total.written)} written, "
                          f"{len(total.stale)} already current, {len(total.failed)} failed.")
        if total.failed:
            raise CommandError(f"{len(total.failed)} push(es) failed; first: {next(iter(total.failed.values()))}")

    def _dry_run(self, tenants, everyone):
        for tenant in tenants.order_by("slug"):
            if everyone:
                count = tenant.memberships.count() + tenant.devices.count()
            else:
                count = PrincipalSync.objects.lagging().filter(tenant=tenant).count()
            self.stdout.write(f"{tenant.slug}: would push {count} snapshot(s)")
