"""The invariants hold in the database itself, whatever code writes the rows."""
import pytest
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from devices.models import Device, Level, Membership, Share
from tests.factories import ShareFactory

pytestmark = pytest.mark.django_db


def refused(**fields):
    with pytest.raises(IntegrityError), transaction.atomic():
        ShareFactory(**fields)


def test_target_is_exactly_one_of_device_and_group(world):
    refused(device=world.lamp, group=world.group)
    refused(device=None, group=None, tenant=world.tenant, grantee=world.alice, created_by=world.owner)


def test_no_self_share_and_valid_level(world):
    refused(device=world.lamp, grantee=world.owner, created_by=world.owner)
    refused(device=world.lamp, level=Level.OWNER)
    refused(device=world.lamp, level=Level.CONTROL, can_reshare=True)


def test_at_most_one_live_share_per_target_and_grantee(world):
    ShareFactory(device=world.lamp, grantee=world.alice)
    refused(device=world.lamp, grantee=world.alice)
    ShareFactory(group=world.group, device=None, grantee=world.alice)
    refused(group=world.group, device=None, grantee=world.alice)


def test_revoked_shares_do_not_count_as_live(world):
    ShareFactory(device=world.lamp, grantee=world.alice, revoked_at=timezone.now())
    ShareFactory(device=world.lamp, grantee=world.alice)
    assert Share.objects.filter(device=world.lamp, grantee=world.alice).count() == 2


def test_thing_name_pattern_enforced_by_database(world):
    with pytest.raises(IntegrityError), transaction.atomic():
        Device.objects.filter(pk=world.lamp.pk).update(thing_name="bad name/with slash")


@pytest.mark.skipif(connection.vendor != "postgresql", reason="composite tenant keys are PostgreSQL constraints")
class TestSameTenant:
    """Deferred composite foreign keys: violations surface at commit (forced here)."""

    def check_refused(self, update):
        with pytest.raises(IntegrityError), transaction.atomic():
            update()
            with connection.cursor() as cursor:
                cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")

    def test_share_cannot_point_at_another_tenants_device(self, world, other):
        share = ShareFactory(device=world.lamp, grantee=world.alice)
        self.check_refused(lambda: Share.objects.filter(pk=share.pk).update(device=other.lamp))

    def test_device_cannot_join_another_tenants_group_or_type(self, world, other):
        self.check_refused(lambda: Device.objects.filter(pk=world.lamp.pk).update(group=other.group))
        self.check_refused(lambda: Device.objects.filter(pk=world.lamp.pk).update(device_type=other.type))

    def test_device_owner_must_be_a_member(self, world, other):
        self.check_refused(lambda: Device.objects.filter(pk=world.lamp.pk).update(owner=other.alice))
        self.check_refused(lambda: Membership.objects.filter(user=world.owner).delete())

    def test_reshare_parent_in_same_tenant(self, world, other):
        parent = ShareFactory(device=other.lamp, grantee=other.alice, level=Level.MANAGE, can_reshare=True)
        child = ShareFactory(device=world.lamp, grantee=world.alice)
        self.check_refused(lambda: Share.objects.filter(pk=child.pk).update(parent=parent))
