import os

import pytest

from devices.models import Membership
from tests.factories import DeviceFactory, DeviceGroupFactory, DeviceTypeFactory, TenantFactory, member

IN_CI = os.environ.get("CI", "").lower() == "true"


def require(available: bool, what: str) -> None:
    """In CI a missing service fails the run; elsewhere the test is skipped, saying why."""
    if available:
        return
    if IN_CI:
        pytest.fail(f"{what} is required in CI but is not available")
    pytest.skip(f"{what} is not available on this machine")


class World:
    """One tenant with an owner, an admin, members, a group and devices."""

    def __init__(self, slug: str):
        self.tenant = TenantFactory(slug=slug, name=slug.title())
        self.admin = member(self.tenant, Membership.Role.ADMIN, email=f"admin@{slug}.test", is_staff=True)
        self.owner = member(self.tenant, email=f"owner@{slug}.test")
        self.alice = member(self.tenant, email=f"alice@{slug}.test")
        self.bob = member(self.tenant, email=f"bob@{slug}.test")
        self.carol = member(self.tenant, email=f"carol@{slug}.test")
        self.type = DeviceTypeFactory(tenant=self.tenant)
        self.group = DeviceGroupFactory(tenant=self.tenant, owner=self.owner, name="Home")
        self.lamp = DeviceFactory(tenant=self.tenant, owner=self.owner, device_type=self.type, group=self.group, name="Lamp")
        self.lock = DeviceFactory(tenant=self.tenant, owner=self.owner, device_type=self.type, name="Lock")


@pytest.fixture
def world(db):
    return World("acme")


@pytest.fixture
def other(db):
    return World("globex")
