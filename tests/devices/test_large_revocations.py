"""Revoking access from many people in one write costs a bounded number of
queries: the request does set-based work, the fan-out happens after commit."""
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from authz.models import PrincipalSync
from devices import services
from devices.models import AuditEvent, Device, Invitation, Level, Membership, RetiredThingName, Share, User
from lambda_bridge import snapshot
from tests.factories import DeviceFactory

pytestmark = pytest.mark.django_db


def shared_with(world, n: int, name: str) -> tuple[Device, list[User]]:
    """A device shared with n members, one of whom re-shared it, with an
    accepted invitation pointing at one share: what a cascade must handle."""
    device = DeviceFactory(tenant=world.tenant, owner=world.owner, device_type=world.type, name=name)
    users = User.objects.bulk_create([User(email=f"{name}{i}@acme.test") for i in range(n)])
    Membership.objects.bulk_create([Membership(tenant=world.tenant, user=u) for u in users])
    manager = services.create_share(actor=world.owner, grantee=world.alice, device=device, level=Level.MANAGE,
                                    can_reshare=True)
    services.create_share(actor=world.alice, grantee=world.bob, device=device, level=Level.VIEW)
    Share.objects.bulk_create([Share(tenant=world.tenant, device=device, grantee=u, level=Level.VIEW,
                                     created_by=world.owner) for u in users])
    Invitation.objects.create(tenant=world.tenant, email="carol@acme.test", device=device, level=Level.MANAGE,
                              invited_by=world.owner, status=Invitation.Status.ACCEPTED, share=manager,
                              valid_until=manager.created_at)
    # Existing outbox rows, as in a live tenant: a bump must not re-insert them.
    services.revoke_share(actor=world.owner, share=services.create_share(
        actor=world.owner, grantee=world.carol, device=device, level=Level.VIEW))
    from authz.snapshots import outbox
    outbox.record(tenant_id=world.tenant.pk, users={u.pk for u in users}, queue=False)
    return device, users


def queries_to_delete(world, device) -> int:
    with CaptureQueriesContext(connection) as captured:
        services.delete_device(actor=world.owner, device=device)
    return len(captured.captured_queries)


def test_deleting_a_device_costs_the_same_queries_for_3_or_300_grantees(world):
    small, _ = shared_with(world, 3, "small")
    large, users = shared_with(world, 300, "large")
    before = {r.principal: r.desired_version for r in PrincipalSync.objects.filter(kind=snapshot.USER)}
    gone = [small.pk, large.pk]  # delete() forgets them

    assert queries_to_delete(world, small) == queries_to_delete(world, large)

    # ... and does all it did before: everything of the device is gone, its name
    # retired, one audit event naming the grantees, every grantee bumped.
    assert not Device.objects.filter(pk__in=gone).exists()
    assert not Share.objects.filter(device_id__in=gone).exists()
    assert not Invitation.objects.filter(device_id__in=gone).exists()
    assert RetiredThingName.objects.filter(thing_name__in=[small.thing_name, large.thing_name]).count() == 2
    event = AuditEvent.objects.get(action="device.delete", device_id=gone[1])
    assert len(event.changes["had_shares_with"]) == 302
    after = {r.principal: r.desired_version for r in PrincipalSync.objects.filter(kind=snapshot.USER)}
    for user in [*users, world.alice, world.bob, world.owner]:
        assert after[str(user.pk)] > before.get(str(user.pk), 0)
    assert PrincipalSync.objects.filter(kind=snapshot.DEVICE, principal=large.thing_name).exists()
