"""The mechanics both outboxes (snapshots, the signing keyring) share."""
from datetime import timedelta

import pytest
from django.utils import timezone

from authz.models import PrincipalSync, SigningKeyring
from authz.versioned_outbox import VersionedOutbox, hybrid_clock, next_version

pytestmark = pytest.mark.django_db


def test_both_outboxes_are_one_shape():
    assert issubclass(PrincipalSync, VersionedOutbox) and issubclass(SigningKeyring, VersionedOutbox)
    shared = {f.name for f in VersionedOutbox._meta.fields}
    assert shared <= {f.name for f in SigningKeyring._meta.fields}
    assert shared <= {f.name for f in PrincipalSync._meta.fields}


def test_next_version_outranks_every_known_version_and_the_clock():
    before = hybrid_clock()
    assert next_version(5) >= before
    far = before + 10**9
    assert next_version(3, far) == far + 1


def test_bump_mark_pushed_never_moves_back_and_failures_count(world):
    now = timezone.now()
    ring = SigningKeyring.objects.create()
    ring.bump(now=now)
    first = ring.desired_version
    ring.bump(now=now)
    assert ring.desired_version > first and not ring.in_sync

    SigningKeyring.objects.filter(pk=ring.pk).record_failure(error="x" * 600)
    SigningKeyring.objects.filter(pk=ring.pk).record_failure(error="throttled")
    ring.refresh_from_db()
    assert (ring.attempts, ring.last_error) == (2, "throttled")

    SigningKeyring.objects.mark_pushed({ring.pk: ring.desired_version}, now=now)
    SigningKeyring.objects.mark_pushed({ring.pk: first}, now=now)  # a slower, older push
    ring.refresh_from_db()
    assert ring.in_sync and ring.pushed_version == ring.desired_version
    assert (ring.attempts, ring.last_error, ring.pushed_at) == (0, "", now)


def test_due_skips_leased_rows_until_the_lease_ends(world):
    now = timezone.now()
    row = PrincipalSync.objects.create(tenant=world.tenant, kind="u", principal="1", desired_version=2)
    assert list(PrincipalSync.objects.due(now)) == [row]

    lease = now + timedelta(minutes=5)
    PrincipalSync.objects.filter(pk=row.pk).lease(until=lease)
    assert not PrincipalSync.objects.due(now).exists()
    PrincipalSync.objects.filter(pk=row.pk).end_lease(until=lease + timedelta(seconds=1))  # not our lease
    assert not PrincipalSync.objects.due(now).exists()
    PrincipalSync.objects.filter(pk=row.pk).end_lease(until=lease)
    assert PrincipalSync.objects.due(now).exists()

    PrincipalSync.objects.mark_pushed({row.pk: 2}, now=now)
    assert not PrincipalSync.objects.lagging().exists()
    PrincipalSync.objects.filter(pk=row.pk).repush(holding=1)
    assert PrincipalSync.objects.due(now).get().pushed_version == 1


def test_lagging_and_in_sync_split_the_rows_as_the_model_property_does(world):
    rows = [PrincipalSync.objects.create(tenant=world.tenant, kind=PrincipalSync.Kind.USER, principal=str(n),
                                         desired_version=desired, pushed_version=pushed)
            for n, (desired, pushed) in enumerate([(5, 5), (6, 5), (5, 7), (0, 0)])]
    by_property = {row.pk for row in rows if row.in_sync}

    assert set(PrincipalSync.objects.in_sync().values_list("pk", flat=True)) == by_property == {
        rows[0].pk, rows[2].pk, rows[3].pk}
    assert set(PrincipalSync.objects.lagging().values_list("pk", flat=True)) == {rows[1].pk}
