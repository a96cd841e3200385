"""Print a principal's snapshot as DynamoDB holds it, decoded."""
from datetime import UTC, datetime

from botocore.exceptions import BotoCoreError, ClientError
from django.core.management.base import BaseCommand, CommandError

from authz.models import PrincipalSync
from authz.snapshots import store
from devices import schedules
from devices.models import Device, Tenant, User
from lambda_bridge import snapshot


def _when(seconds):
    return "-" if seconds is None else datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


class Command(BaseCommand):
    help = "Show the snapshot item(s) of a user (by email) or a device (--device THING)."

    def add_arguments(self, parser):
        parser.add_argument("email", nargs="?")
        parser.add_argument("--device", metavar="THING")
        parser.add_argument("--tenant", metavar="SLUG")

    def handle(self, *args, email, device, tenant, **options):
        if bool(email) == bool(device):
            raise CommandError("Give a user's email or --device THING.")
        keys = self._keys(email, device, tenant)
        for key in keys:
            try:
                item = store.get_item(key)
            except (BotoCoreError, ClientError) as exc:
                raise CommandError(f"Cannot read {key}: {exc}") from None
            self._show(key, item)

    def _keys(self, email, thing, slug) -> list[str]:
        tenants = Tenant.objects.all()
        if slug:
            tenants = tenants.filter(slug=slug)
            if not tenants:
                raise CommandError(f"No tenant with slug {slug}.")
        if thing:
            found = Device.objects.filter(thing_name=thing, tenant__in=tenants).values_list("tenant_id", flat=True)
            rows = PrincipalSync.objects.filter(kind=snapshot.DEVICE, principal=thing, tenant__in=tenants)
            tenant_ids = set(found) | set(rows.values_list("tenant_id", flat=True))
            if not tenant_ids:
                raise CommandError(f"No device {thing} here.")
            return [snapshot.item_key(snapshot.DEVICE, t, thing) for t in sorted(tenant_ids)]
        user = User.objects.filter(email=email.lower()).first()
        if user is None:
            raise CommandError(f"No user {email}.")
        member_of = user.memberships.filter(tenant__in=tenants).values_list("tenant_id", flat=True)
        # Tenants they have left still hold a tombstone worth seeing.
        rows = PrincipalSync.objects.filter(kind=snapshot.USER, principal=str(user.pk), tenant__in=tenants)
        tenant_ids = set(member_of) | set(rows.values_list("tenant_id", flat=True))
        if not tenant_ids:
            raise CommandError(f"{user.email} has no snapshot in {'that tenant' if slug else 'any tenant'}.")
        return [snapshot.item_key(snapshot.USER, t, str(user.pk)) for t in sorted(tenant_ids)]

    def _show(self, key, item):
        if item is None:
            self.stdout.write(f"{key}: no item (not pushed yet)")
            return
        snap = snapshot.from_item(item)
        now = int(datetime.now(UTC).timestamp())
        self.stdout.write(
            f"{key}: format {item['f']['N']}, version {snap.version}, generated {_when(snap.generated_at)}, "
            f"{snapshot.item_size(item)} bytes" + (", GONE (tombstone)" if snap.gone else "")
        )
        names = dict(Device.objects.filter(thing_name__in={e.thing for e in snap.entries})
                      .values_list("thing_name", "name"))
        rows = [("thing", "device", "level", "not before", "expires", "group", "hours", "now")]
        for e in sorted(snap.entries, key=lambda e: (e.thing, -e.level)):
            rows.append((e.thing, names.get(e.thing, "?"), snapshot.LEVEL_NAMES[e.level], _when(e.not_before),
                         _when(e.expires), "-" if e.group is None else str(e.group),
                         schedules.summary(schedules.to_json(e.schedule)) or "any",
                         "active" if e.active(now) else "inactive"))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for row in rows:
            self.stdout.write("  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        if not snap.entries:
            self.stdout.write("  (no devices)")
