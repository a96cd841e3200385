"""Writers rolled back to a format that cannot carry a weekly schedule
(docs/snapshots.md#rolling-out-format-4): the principal whose snapshot has
one fails its push alone, with the reason, and the rest of its batch is
written. The twin of the cut-off case in tests/authz/test_live_cuts.py."""
import pytest

from authz.models import PrincipalSync
from authz.snapshots.push import push
from devices import services
from devices.models import Level, Share
from lambda_bridge.snapshot import USER, item_key

pytestmark = pytest.mark.django_db

TUESDAY_MORNINGS = {"timezone": "Europe/Brussels", "windows": [{"days": ["tue"], "start": "09:00", "end": "12:00"}]}


def test_a_scheduled_grant_under_a_format_3_writer_fails_alone_and_its_batch_is_written(world, table, settings):
    scheduled = services.create_share(actor=world.owner, grantee=world.bob, level=Level.CONTROL, device=world.lock)
    services.create_share(actor=world.owner, grantee=world.alice, level=Level.VIEW, device=world.lamp)
    # Put on in the database as the share's terms: how it got there is the domain's business.
    Share.objects.filter(pk=scheduled.pk).update(schedule=TUESDAY_MORNINGS)
    settings.SNAPSHOT_WRITE_FORMAT = 3
    ids = list(PrincipalSync.objects.lagging().values_list("pk", flat=True))

    result = push(ids)

    bob = PrincipalSync.objects.get(tenant=world.tenant, kind=USER, principal=str(world.bob.pk))
    assert list(result.failed) == [bob.pk] and "weekly schedule" in result.failed[bob.pk]
    assert bob.pk not in result.retryable
    assert set(result.written) == set(ids) - {bob.pk}
    assert item_key(USER, world.tenant.pk, str(world.alice.pk)) in table.items()
    assert item_key(USER, world.tenant.pk, str(world.bob.pk)) not in table.items()
    bob.refresh_from_db()
    assert not bob.in_sync and bob.retry_after is not None  # backs off, tells the operator why
    assert "write format 4" in bob.last_error


def test_the_same_grant_under_the_format_4_writer_is_written_with_its_schedule(world, table, settings):
    scheduled = services.create_share(actor=world.owner, grantee=world.bob, level=Level.CONTROL, device=world.lock)
    Share.objects.filter(pk=scheduled.pk).update(schedule=TUESDAY_MORNINGS)
    settings.SNAPSHOT_WRITE_FORMAT = 4

    result = push(list(PrincipalSync.objects.lagging().values_list("pk", flat=True)))

    assert not result.failed
    entries = table.snapshot(item_key(USER, world.tenant.pk, str(world.bob.pk))).entries
    assert [(e.thing, e.schedule.zone) for e in entries if e.schedule] == [(world.lock.thing_name, "Europe/Brussels")]
