"""Create (or complete) the demo tenant. Safe to run any number of times."""
from datetime import timedelta

from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from devices import audit, services
from devices.models import Device, DeviceGroup, DeviceType, Level, Membership, Share, Tenant, User

DEMO_PASSWORD = "devshare-demo"  # noqa: S105  (public on purpose: the README prints it)
PEOPLE = [
    ("alice@demo.devshare.local", "Alice Owner", Membership.Role.OWNER),
    ("bob@demo.devshare.local", "Bob Partner", Membership.Role.MEMBER),
    ("carol@demo.devshare.local", "Carol Guest", Membership.Role.MEMBER),
    ("dave@demo.devshare.local", "Dave Support", Membership.Role.ADMIN),
    ("erin@demo.devshare.local", "Erin Neighbour", Membership.Role.MEMBER),
    ("frank@demo.devshare.local", "Frank Cleaner", Membership.Role.MEMBER),
]
# The demo home's clock, which the cleaner's hours are read on.
DEMO_TIME_ZONE = "Europe/Brussels"
CLEANING_HOURS = {"timezone": DEMO_TIME_ZONE, "windows": [{"days": ["tue"], "start": "09:00", "end": "12:00"}]}
TYPES = [
    ("lightbulb", "Lightbulb", ["telemetry", "commands", "shadow"]),
    ("thermostat", "Thermostat", ["telemetry", "commands", "shadow", "named_shadows"]),
    ("lock", "Door lock", ["commands", "shadow"]),
]
# thing name, display name, type, in the Home group?
DEVICES = [
    ("demo-living-light", "Living room light", "lightbulb", True),
    ("demo-hall-thermostat", "Hall thermostat", "thermostat", True),
    ("demo-front-lock", "Front door lock", "lock", True),
    ("demo-garage-light", "Garage light", "lightbulb", False),
]


class Command(BaseCommand):
    help = ("Seed a demo tenant with people, devices, a home group and shares at every level, "
            "one of them on a weekly schedule.")

    def handle(self, *args, **options):
        with audit.origin("command"), transaction.atomic():
            system = self._system_user()
            people = {email.split("@")[0]: self._person(email, name) for email, name, _ in PEOPLE}
            tenant = Tenant.objects.filter(slug="demo").first() or services.create_tenant(
                actor=system, name="Demo Home Co", slug="demo"
            )
            for (_email, _, role), person in zip(PEOPLE, people.values(), strict=True):
                if not Membership.objects.filter(tenant=tenant, user=person).exists():
                    services.add_member(actor=system, tenant=tenant, user=person, role=role)
            types = {slug: self._device_type(system, tenant, slug, name, caps) for slug, name, caps in TYPES}
            alice = people["alice"]
            home = DeviceGroup.objects.filter(tenant=tenant, owner=alice, name="Home").first() or services.create_group(
                actor=alice, tenant=tenant, name="Home"
            )
            devices = {}
            for thing, name, type_slug, grouped in DEVICES:
                devices[thing] = Device.objects.filter(thing_name=thing).first() or services.register_device(
                    actor=alice, tenant=tenant, name=name, device_type=types[type_slug], thing_name=thing,
                    group=home if grouped else None,
                )
            soon = timezone.now() + timedelta(hours=2)
            lock_manager = self._share(alice, people["bob"], Level.MANAGE, device=devices["demo-front-lock"],
                                       can_reshare=True)
            self._share(people["bob"], people["erin"], Level.VIEW, device=devices["demo-front-lock"])
            self._share(alice, people["dave"], Level.CONTROL, device=devices["demo-hall-thermostat"])
            self._share(alice, people["carol"], Level.VIEW, device=devices["demo-garage-light"])
            self._share(alice, people["erin"], Level.CONTROL, device=devices["demo-living-light"], expires_at=soon)
            self._share(alice, people["carol"], Level.VIEW, group=home)
            # Issue 16's example: the cleaner may open the front door on Tuesday mornings only.
            self._share(alice, people["frank"], Level.CONTROL, device=devices["demo-front-lock"],
                        schedule=CLEANING_HOURS)
        self.stdout.write(self.style.SUCCESS(
            f"Demo tenant '{tenant.slug}': {len(people)} people, {len(devices)} devices, "
            f"{Share.objects.live().filter(tenant=tenant).count()} live shares "
            f"(re-share from {lock_manager.grantee.email} included). "
            f"People sign in with password '{DEMO_PASSWORD}'."
        ))

    def _system_user(self) -> User:
        user, _ = User.objects.get_or_create(
            email="system@devshare.local",
            defaults={"full_name": "Devshare seed", "is_superuser": True, "is_staff": False, "is_active": True},
        )
        if user.has_usable_password():
            user.set_unusable_password()
            user.save(update_fields=["password"])
        return user

    def _person(self, email: str, name: str) -> User:
        user = User.objects.filter(email=email).first()
        if user is None:
            user = User.objects.create_user(email=email, password=DEMO_PASSWORD, full_name=name)
        if email.startswith("alice@") and not user.is_staff:
            user.is_staff = True  # Alice, the tenant owner, uses the admin console
            user.save(update_fields=["is_staff"])
        return user

    def _device_type(self, actor, tenant, slug, name, capabilities) -> DeviceType:
        return DeviceType.objects.filter(tenant=tenant, slug=slug).first() or services.create_device_type(
            actor=actor, tenant=tenant, name=name, slug=slug, capabilities=capabilities
        )

    def _share(self, actor, grantee, level, *, device=None, group=None, can_reshare=False, expires_at=None,
               schedule=None) -> Share:
        existing = Share.objects.filter(device=device, group=group, grantee=grantee, revoked_at__isnull=True).first()
        if existing is not None and existing.is_live():
            return existing
        return services.create_share(actor=actor, grantee=grantee, level=level, device=device, group=group,
                                     can_reshare=can_reshare, expires_at=expires_at, schedule=schedule)
