"""factory_boy factories. They build rows directly (test setup, not behaviour under test);
tests exercise behaviour through the services."""
from datetime import timedelta

import factory
from django.utils import timezone

from devices.models import (
    AuditEvent,
    Device,
    DeviceGroup,
    DeviceType,
    Invitation,
    Level,
    Membership,
    Share,
    Tenant,
    User,
)


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    email = factory.Sequence(lambda n: f"user{n}@example.test")
    full_name = factory.Faker("name")
    password = factory.PostGenerationMethodCall("set_password", "pw")

    @factory.post_generation
    def _save(obj, create, extracted, **kwargs):
        if create:
            obj.save()


class TenantFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Tenant

    name = factory.Sequence(lambda n: f"Tenant {n}")
    slug = factory.Sequence(lambda n: f"tenant-{n}")


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    tenant = factory.SubFactory(TenantFactory)
    user = factory.SubFactory(UserFactory)
    role = Membership.Role.MEMBER


def member(tenant, role=Membership.Role.MEMBER, **user_fields) -> User:
    user = UserFactory(**user_fields)
    MembershipFactory(tenant=tenant, user=user, role=role)
    return user


class DeviceTypeFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = DeviceType

    tenant = factory.SubFactory(TenantFactory)
    name = "Lightbulb"
    slug = factory.Sequence(lambda n: f"type-{n}")
    capabilities = ["telemetry", "commands", "shadow"]


class DeviceGroupFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = DeviceGroup

    owner = factory.LazyAttribute(lambda o: member(o.tenant))
    tenant = factory.SubFactory(TenantFactory)
    name = factory.Sequence(lambda n: f"Home {n}")


class DeviceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Device

    tenant = factory.SubFactory(TenantFactory)
    owner = factory.LazyAttribute(lambda o: member(o.tenant))
    device_type = factory.LazyAttribute(lambda o: DeviceTypeFactory(tenant=o.tenant))
    name = factory.Sequence(lambda n: f"Device {n}")


class ShareFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Share

    device = factory.SubFactory(DeviceFactory)
    group = None
    tenant = factory.LazyAttribute(lambda o: (o.device or o.group).tenant)
    grantee = factory.LazyAttribute(lambda o: member(o.tenant))
    created_by = factory.LazyAttribute(lambda o: (o.device or o.group).owner)
    level = Level.VIEW
    created_at = factory.LazyFunction(timezone.now)


# --- API tests ---------------------------------------------------------------------------


class InvitationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Invitation

    device = factory.SubFactory(DeviceFactory)
    group = None
    tenant = factory.LazyAttribute(lambda o: (o.device or o.group).tenant)
    email = factory.Sequence(lambda n: f"invitee{n}@example.test")
    invited_by = factory.LazyAttribute(lambda o: (o.device or o.group).owner)
    level = Level.VIEW
    valid_until = factory.LazyFunction(lambda: timezone.now() + timedelta(days=14))


class AuditEventFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = AuditEvent

    tenant = factory.LazyAttribute(lambda o: o.device.tenant)
    device_id = factory.LazyAttribute(lambda o: o.device.pk)
    action = "device.note"
    object_type = "device"
    object_repr = factory.Sequence(lambda n: f"event {n}")

    class Params:
        device = None
