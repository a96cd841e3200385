"""List endpoints cost the same number of SQL queries for 1 row as for 100."""
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from devices import services
from devices.models import Level
from tests.factories import (
    AuditEventFactory,
    DeviceFactory,
    DeviceGroupFactory,
    DeviceTypeFactory,
    InvitationFactory,
    MembershipFactory,
    ShareFactory,
    TenantFactory,
    member,
)
from tests.support.api import tenant_url, url

pytestmark = pytest.mark.django_db


def grow(world, n):
    """n of everything a list shows, for alice: devices shared with her in and out of
    groups, groups, shares she received and made, invitations, audit events."""
    for i in range(n):
        device = DeviceFactory(tenant=world.tenant, owner=world.owner, device_type=world.type,
                               group=world.group if i % 2 else None)
        ShareFactory(device=device, grantee=world.alice, level=Level.CONTROL)
        DeviceGroupFactory(tenant=world.tenant, owner=world.alice)
        DeviceTypeFactory(tenant=world.tenant)
        ShareFactory(device=world.lock, grantee=member(world.tenant), level=Level.VIEW)
        InvitationFactory(device=world.lock)
        InvitationFactory(device=device, email=world.alice.email)
        AuditEventFactory(device=world.lock)
        MembershipFactory(tenant=TenantFactory(), user=world.alice)


LISTS = {
    "devices": lambda w: tenant_url("device-list", w),
    "groups": lambda w: tenant_url("group-list", w),
    "device types": lambda w: tenant_url("device-type-list", w),
    "received shares": lambda w: tenant_url("share-list", w),
    # The owner's view: a sharee sees only their own share of a device.
    "device shares": lambda w: tenant_url("device-shares", w, device=w.lock.pk),
    "tenant invitations": lambda w: tenant_url("tenant-invitation-list", w),
    "my invitations": lambda w: url("invitation-list"),
    "audit log": lambda w: tenant_url("device-audit", w, device=w.lock.pk),
    "access list": lambda w: tenant_url("device-access-list", w, device=w.lock.pk),
    "tenants": lambda w: url("tenant-list"),
}


def count_queries(client, path):
    with CaptureQueriesContext(connection) as queries:
        response = client.get(path, {"page_size": 200})
    assert response.status_code == 200, response.content[:300]
    body = response.json()
    rows = body["results"] if isinstance(body, dict) else body
    return len(queries), len(rows)


@pytest.mark.parametrize("name", list(LISTS))
def test_constant_queries(world, client_for, name):
    # The audit log and access list are for overseers: alice manages the lock here.
    services.create_share(actor=world.owner, grantee=world.alice, device=world.lock, level=Level.MANAGE)
    client = client_for(world.owner if name == "device shares" else world.alice)
    path = LISTS[name](world)
    grow(world, 1)
    small, small_rows = count_queries(client, path)
    grow(world, 99)
    large, large_rows = count_queries(client, path)
    assert large_rows > small_rows, "the larger list must actually be larger"
    assert large == small, f"{name}: {small} queries for {small_rows} rows, {large} for {large_rows}"
