from devices.models import Membership
from tests.factories import DeviceFactory, DeviceGroupFactory, DeviceTypeFactory, TenantFactory, member


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
        self.lamp = DeviceFactory(tenant=self.tenant, owner=self.owner, device_type=self.type, group=self.group,
                                  name="Lamp")
        self.lock = DeviceFactory(tenant=self.tenant, owner=self.owner, device_type=self.type, name="Lock")
