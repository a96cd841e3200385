"""Compare DynamoDB with the database: the table, the signing-key item and
every pushed snapshot item; with --repair, put back what is missing or stale."""
from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from authz.management.common import progress, tenants_named
from authz.models import PrincipalSync
from authz.snapshots import antientropy, store
from authz.snapshots.push import push


class Command(BaseCommand):
    help = ("Check that the table, the signing-key item and every pushed snapshot are in DynamoDB at the "
            "pushed version (tombstones included); --repair re-pushes what is missing or stale, inline.")

    def add_arguments(self, parser):
        parser.add_argument("--tenant", action="append", metavar="SLUG", help="Only this tenant (repeatable).")
        parser.add_argument("--repair", action="store_true", help="Re-push what is missing or stale.")
        parser.add_argument("--batch", type=int, default=500, help="Items compared per round (1..10000).")

    def handle(self, *args, tenant, repair, batch, **options):
        if not 1 <= batch <= 10_000:
            raise CommandError(f"--batch must be between 1 and 10000, not {batch}.")
        tenants = tenants_named(tenant)
        try:
            self._verify(tenants, repair=repair, batch=batch)
        except (BotoCoreError, ClientError) as exc:
            raise CommandError(f"DynamoDB table {settings.DYNAMODB_TABLE}: {exc}") from None

    def _verify(self, tenants, *, repair: bool, batch: int) -> None:
        name = settings.DYNAMODB_TABLE
        table = antientropy.check_table(repair=repair)
        if table == antientropy.UNREACHABLE:
            raise CommandError(f"DynamoDB table {name} cannot be reached.")
        if table == antientropy.MISSING:
            raise CommandError(f"Table {name} is missing; --repair creates it and re-pushes every snapshot.")
        self.stdout.write(f"table {name}: {'created' if table == antientropy.CREATED else 'ok'}")

        key_ok = not antientropy.key_item_behind()
        if not key_ok and repair:
            key_ok = antientropy.check_key_item(repair=True, report=False)
            self.stdout.write(f"key item: {'published again' if key_ok else 'could not be published'}")
        else:
            self.stdout.write(f"key item: {'ok' if key_ok else 'missing or older than the published version'}")

        rows = PrincipalSync.objects.filter(tenant__in=tenants)
        if table == antientropy.CREATED:
            # Every item went with the table: push what the new table lacks.
            ids = list(rows.lagging().order_by("pk").values_list("pk", flat=True))
            found = antientropy.Findings(checked=len(ids), missing=ids)
        else:
            found = self._compare(rows, repair=repair, batch=batch)
        repaired, failed = self._push(found.ids, batch) if repair else (0, {})

        self.stdout.write(f"{found.checked} checked, {len(found.missing)} missing, {len(found.stale)} stale, "
                          f"{repaired} repaired" + (f", {found.expired} expired tombstone(s)" if found.expired
                                                    else "") + ".")
        if failed:
            raise CommandError(f"{len(failed)} re-push(es) failed; first: {next(iter(failed.values()))}")
        if not repair and (found.ids or not key_ok):
            raise CommandError("DynamoDB differs from the database; run with --repair to put it right.")

    def _compare(self, rows, *, repair: bool, batch: int) -> antientropy.Findings:
        rows = rows.filter(pushed_version__gt=0).order_by("pk")
        total = rows.count()
        found = antientropy.Findings()
        cursor = 0
        while True:
            chunk = list(rows.filter(pk__gt=cursor)[:batch])
            if not chunk:
                break
            try:
                found.add(antientropy.verify_rows(chunk, mark=repair))
            except store.TableMissing:
                raise CommandError(f"Table {settings.DYNAMODB_TABLE} went missing during the check; "
                                   f"run again with --repair.") from None
            cursor = chunk[-1].pk
            progress(self.stderr, min(found.checked, total), total)
        return found

    def _push(self, ids: list[int], batch: int) -> tuple[int, dict]:
        """Through the push path, inline; an item already at its version counts as repaired."""
        repaired, failed = 0, {}
        for start in range(0, len(ids), batch):
            result = push(ids[start:start + batch])
            repaired += len(result.written) + len(result.stale)
            failed.update(result.failed)
        return repaired, failed
