"""What the snapshot commands share: the tenants they were asked about, and the
progress bar they draw on a terminal (never into a pipe or a log)."""
import sys

from django.core.management.base import CommandError

from devices.models import Tenant

BAR = 30


def progress(stream, done: int, total: int) -> None:
    if not sys.stderr.isatty():
        return
    filled = BAR * done // max(total, 1)
    stream.write(f"\r[{'#' * filled}{'.' * (BAR - filled)}] {done}/{total}", ending="")
    if done == total:
        stream.write("")


def tenants_named(slugs: list[str] | None):
    """Every tenant, or the ones `--tenant` named; an unknown slug is a one-line error."""
    tenants = Tenant.objects.all()
    if not slugs:
        return tenants
    tenants = tenants.filter(slug__in=slugs)
    unknown = set(slugs) - set(tenants.values_list("slug", flat=True))
    if unknown:
        raise CommandError(f"No tenant with slug {', '.join(sorted(unknown))}.")
    return tenants
