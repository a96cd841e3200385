import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from devices import audit, services
from devices.models import AuditEvent, Device, DeviceGroup, Invitation, Level, Membership, Share
from devices.selectors import effective_access

pytestmark = pytest.mark.django_db


def level_of(user, device):
    access = effective_access(user=user, device=device)
    return None if access is None else access.level


def register(world, **kw):
    values = {"actor": world.alice, "tenant": world.tenant, "name": "Kettle", "device_type": world.type} | kw
    return services.register_device(**values)


class TestRegister:
    def test_generates_a_short_valid_thing_name(self, world):
        device = register(world)
        assert device.owner == world.alice
        assert device.thing_name.startswith("d-") and len(device.thing_name) == 14
        other = register(world)
        assert other.thing_name != device.thing_name

    def test_given_thing_name_is_kept(self, world):
        assert register(world, thing_name="kettle:01_A-b").thing_name == "kettle:01_A-b"

    @pytest.mark.parametrize("bad", ["with space", "slash/name", "x" * 129, "dollar$", "plus+", "hash#", "star*"])
    def test_invalid_thing_name_is_refused(self, world, bad):
        with pytest.raises(ValidationError):
            register(world, thing_name=bad)
        assert not Device.objects.filter(name="Kettle").exists()

    def test_duplicate_thing_name_is_refused(self, world, other):
        register(world, thing_name="same-name")
        with pytest.raises(ValidationError, match="already registered"):
            services.register_device(actor=other.alice, tenant=other.tenant, name="X", device_type=other.type,
                                     thing_name="same-name")

    def test_blank_name_refused_without_writes(self, world):
        before = (Device.objects.count(), AuditEvent.objects.count())
        with pytest.raises(ValidationError, match="blank"):
            register(world, name="   ")
        assert (Device.objects.count(), AuditEvent.objects.count()) == before

    def test_foreign_device_type_or_tenant_is_refused(self, world, other):
        with pytest.raises(ValidationError, match="same tenant"):
            register(world, device_type=other.type)
        with pytest.raises(ValidationError, match="not an active member"):
            register(world, tenant=other.tenant, device_type=other.type)

    def test_registering_for_someone_else_needs_admin(self, world):
        with pytest.raises(PermissionDenied):
            register(world, owner=world.bob)
        assert register(world, actor=world.admin, owner=world.bob).owner == world.bob

    def test_group_must_belong_to_the_owner(self, world):
        with pytest.raises(ValidationError, match="own owner"):
            register(world, group=world.group)

    def test_thing_name_is_immutable(self, world):
        device = Device.objects.get(pk=world.lamp.pk)
        device.thing_name = "renamed"
        with pytest.raises(ValidationError, match="cannot change"):
            device.save()
        assert Device.objects.get(pk=device.pk).thing_name == world.lamp.thing_name


class TestRenameTransferDelete:
    def test_rename_rights(self, world):
        services.create_share(actor=world.owner, grantee=world.alice, device=world.lock, level=Level.MANAGE)
        services.create_share(actor=world.owner, grantee=world.bob, device=world.lock, level=Level.CONTROL)
        services.rename_device(actor=world.alice, device=world.lock, name="Front door")
        with pytest.raises(PermissionDenied):
            services.rename_device(actor=world.bob, device=world.lock, name="Mine now")
        assert Device.objects.get(pk=world.lock.pk).name == "Front door"

    def test_transfer_revokes_shares_and_leaves_group(self, world):
        services.create_share(actor=world.owner, grantee=world.alice, device=world.lamp, level=Level.CONTROL)
        services.create_share(actor=world.owner, grantee=world.bob, group=world.group, level=Level.VIEW)
        services.create_invitation(actor=world.owner, email="x@example.test", device=world.lamp, level=Level.VIEW)
        services.transfer_device(actor=world.owner, device=world.lamp, new_owner=world.carol)
        lamp = Device.objects.get(pk=world.lamp.pk)
        assert (lamp.owner, lamp.group) == (world.carol, None)
        assert level_of(world.carol, lamp) == Level.OWNER
        assert level_of(world.owner, lamp) is None
        assert level_of(world.alice, lamp) is None and level_of(world.bob, lamp) is None
        assert level_of(world.bob, world.lock) is None  # the group share still covers only the group
        assert Invitation.objects.get(device=lamp).status == Invitation.Status.CANCELLED
        transfer = AuditEvent.objects.get(action="device.transfer")
        assert transfer.changes["owner"] == [world.owner.email, world.carol.email]

    def test_transfer_keeping_shares(self, world):
        services.create_share(actor=world.owner, grantee=world.alice, device=world.lock, level=Level.CONTROL)
        services.create_share(actor=world.owner, grantee=world.carol, device=world.lock, level=Level.VIEW)
        services.transfer_device(actor=world.owner, device=world.lock, new_owner=world.carol, keep_shares=True)
        lock = Device.objects.get(pk=world.lock.pk)
        assert level_of(world.alice, lock) == Level.CONTROL
        assert level_of(world.carol, lock) == Level.OWNER
        assert not Share.objects.live().filter(device=lock, grantee=world.carol).exists()

    def test_transfer_rules(self, world, other):
        with pytest.raises(PermissionDenied):
            services.transfer_device(actor=world.alice, device=world.lock, new_owner=world.alice)
        with pytest.raises(ValidationError, match="not an active member"):
            services.transfer_device(actor=world.owner, device=world.lock, new_owner=other.alice)
        with pytest.raises(ValidationError, match="already belongs"):
            services.transfer_device(actor=world.owner, device=world.lock, new_owner=world.owner)
        services.transfer_device(actor=world.admin, device=world.lock, new_owner=world.bob)
        assert Device.objects.get(pk=world.lock.pk).owner == world.bob

    def test_delete(self, world):
        services.create_share(actor=world.owner, grantee=world.alice, device=world.lock, level=Level.VIEW)
        with pytest.raises(PermissionDenied):
            services.delete_device(actor=world.alice, device=world.lock)
        lock_pk = world.lock.pk
        services.delete_device(actor=world.owner, device=world.lock)
        assert not Device.objects.filter(pk=lock_pk).exists()
        assert not Share.objects.filter(grantee=world.alice).exists()
        event = AuditEvent.objects.get(action="device.delete")
        assert event.device_id == lock_pk and event.changes["had_shares_with"] == [world.alice.email]


class TestGroups:
    def test_group_share_covers_present_and_future_devices(self, world):
        services.create_share(actor=world.owner, grantee=world.alice, group=world.group, level=Level.CONTROL)
        assert level_of(world.alice, world.lamp) == Level.CONTROL
        assert level_of(world.alice, world.lock) is None
        services.add_device_to_group(actor=world.owner, group=world.group, device=world.lock)
        assert level_of(world.alice, world.lock) == Level.CONTROL
        services.remove_device_from_group(actor=world.owner, device=world.lock)
        assert level_of(world.alice, world.lock) is None

    def test_removing_a_device_revokes_reshares_made_through_the_group(self, world):
        services.create_share(actor=world.owner, grantee=world.alice, group=world.group, level=Level.MANAGE,
                              can_reshare=True)
        child = services.create_share(actor=world.alice, grantee=world.bob, device=world.lamp, level=Level.VIEW)
        services.remove_device_from_group(actor=world.owner, device=world.lamp)
        child.refresh_from_db()
        assert child.revoked_at is not None and level_of(world.bob, world.lamp) is None

    def test_only_owner_devices_join(self, world):
        foreign = register(world)
        with pytest.raises(ValidationError, match="own devices"):
            services.add_device_to_group(actor=world.admin, group=world.group, device=foreign)
        with pytest.raises(PermissionDenied):
            services.add_device_to_group(actor=world.alice, group=world.group, device=world.lock)
        with pytest.raises(ValidationError, match="already in"):
            services.add_device_to_group(actor=world.owner, group=world.group, device=world.lamp)

    def test_create_rename_delete(self, world):
        group = services.create_group(actor=world.alice, tenant=world.tenant, name="Cabin")
        with pytest.raises(ValidationError, match="already has a group"):
            services.create_group(actor=world.alice, tenant=world.tenant, name="Cabin")
        with pytest.raises(PermissionDenied):
            services.rename_group(actor=world.bob, group=group, name="Bob's")
        services.rename_group(actor=world.alice, group=group, name="Lake cabin")
        assert DeviceGroup.objects.get(pk=group.pk).name == "Lake cabin"
        services.create_group(actor=world.alice, tenant=world.tenant, name="Flat")
        with pytest.raises(ValidationError, match="already a group named Flat"):
            services.rename_group(actor=world.alice, group=group, name="Flat")
        assert DeviceGroup.objects.get(pk=group.pk).name == "Lake cabin"

    def test_delete_group_keeps_devices_and_revokes_its_shares(self, world):
        s = services.create_share(actor=world.owner, grantee=world.alice, group=world.group, level=Level.VIEW)
        services.delete_group(actor=world.owner, group=world.group)
        assert Device.objects.get(pk=world.lamp.pk).group is None
        assert not Share.objects.filter(pk=s.pk).exists()
        assert AuditEvent.objects.filter(action="share.revoke", object_id=str(s.pk)).exists()
        assert level_of(world.alice, world.lamp) is None


class TestMembership:
    def test_remove_member_revokes_received_shares(self, world):
        services.create_share(actor=world.owner, grantee=world.alice, device=world.lock, level=Level.VIEW)
        services.remove_member(actor=world.admin, membership=Membership.objects.get(user=world.alice))
        assert level_of(world.alice, world.lock) is None
        assert not Membership.objects.filter(user=world.alice, tenant=world.tenant).exists()

    def test_owner_of_devices_cannot_be_removed(self, world):
        with pytest.raises(ValidationError, match="still owns devices"):
            services.remove_member(actor=world.admin, membership=Membership.objects.get(user=world.owner))

    def test_roles(self, world):
        with pytest.raises(PermissionDenied):
            services.add_member(actor=world.alice, tenant=world.tenant, user=world.alice, role="admin")
        with pytest.raises(PermissionDenied, match="owner"):
            services.change_member_role(actor=world.admin, membership=Membership.objects.get(user=world.bob),
                                        role="owner")
        with pytest.raises(ValidationError, match="Role"):
            services.change_member_role(actor=world.admin, membership=Membership.objects.get(user=world.bob),
                                        role="root")
        services.change_member_role(actor=world.admin, membership=Membership.objects.get(user=world.bob), role="admin")
        assert Membership.objects.get(user=world.bob).role == "admin"

    def test_deactivated_user_loses_access(self, world, admin_user):
        services.create_share(actor=world.owner, grantee=world.alice, device=world.lock, level=Level.VIEW)
        services.set_user_active(actor=admin_user, user=world.alice, is_active=False)
        world.alice.refresh_from_db()
        assert level_of(world.alice, world.lock) is None
        assert not Device.objects.visible_to(world.alice).exists()


class TestAudit:
    def test_every_write_records_one_event_with_actor_and_origin(self, world):
        with audit.origin("api", "203.0.113.9"):
            s = services.create_share(actor=world.owner, grantee=world.alice, device=world.lock, level=Level.VIEW)
        event = AuditEvent.objects.get(action="share.create")
        assert (event.actor, event.actor_email, event.tenant, event.source, event.ip_address) == (
            world.owner, world.owner.email, world.tenant, "api", "203.0.113.9"
        )
        assert (event.object_type, event.object_id, event.device_id) == ("share", str(s.pk), world.lock.pk)
        assert event.changes["level"] == "view" and event.changes["grantee"] == world.alice.email

    @pytest.mark.parametrize(
        "action, call",
        [
            ("device.register", lambda w: register(w)),
            ("device.rename", lambda w: services.rename_device(actor=w.owner, device=w.lock, name="N")),
            ("device.transfer", lambda w: services.transfer_device(actor=w.owner, device=w.lock, new_owner=w.bob)),
            ("device.delete", lambda w: services.delete_device(actor=w.owner, device=w.lock)),
            ("group.create", lambda w: services.create_group(actor=w.bob, tenant=w.tenant, name="G")),
            ("group.rename", lambda w: services.rename_group(actor=w.owner, group=w.group, name="G2")),
            ("group.delete", lambda w: services.delete_group(actor=w.owner, group=w.group)),
            ("group.add_device", lambda w: services.add_device_to_group(actor=w.owner, group=w.group, device=w.lock)),
            ("group.remove_device", lambda w: services.remove_device_from_group(actor=w.owner, device=w.lamp)),
            ("invitation.create", lambda w: services.create_invitation(actor=w.owner, email="z@example.test",
                                                                     device=w.lock, level=Level.VIEW)),
            ("membership.update", lambda w: services.change_member_role(
                actor=w.admin, membership=Membership.objects.get(user=w.bob), role="admin")),
            ("device_type.create", lambda w: services.create_device_type(actor=w.admin, tenant=w.tenant, name="Fan",
                                                                       slug="fan", capabilities=["telemetry"])),
        ],
    )
    def test_action_is_audited(self, world, action, call):
        call(world)
        event = AuditEvent.objects.get(action=action)
        assert event.actor is not None and event.tenant == world.tenant

    def test_refused_write_leaves_no_event(self, world):
        before = AuditEvent.objects.count()
        with pytest.raises(PermissionDenied):
            services.delete_device(actor=world.bob, device=world.lock)
        with pytest.raises(ValidationError):
            services.create_device_type(actor=world.admin, tenant=world.tenant, name="X", slug="x",
                                        capabilities=["teleport"])
        assert AuditEvent.objects.count() == before


def test_a_deleted_devices_thing_name_is_never_given_out_again(world, other):
    """AWS keeps a thing's shadow and retained messages by name, and an old
    device token names its thing: a new device under the name would inherit them."""
    thing = world.lamp.thing_name
    services.delete_device(actor=world.owner, device=world.lamp)
    for tenant, actor in ((world.tenant, world.bob), (other.tenant, other.owner)):
        with pytest.raises(ValidationError) as refused:
            services.register_device(actor=actor, tenant=tenant, name="Lamp again", device_type=(
                world.type if tenant == world.tenant else other.type), thing_name=thing)
        assert "cannot be used again" in refused.value.message_dict["thing_name"][0]
    assert not Device.objects.filter(thing_name=thing).exists()
