"""The console is tenant-scoped and every write in it goes through the services."""
import re

import pytest
from django.urls import reverse

from devices import services
from devices.models import AuditEvent, Device, DeviceGroup, DeviceType, Invitation, Level, Membership, Share

pytestmark = pytest.mark.django_db

MODELS = ["device", "devicegroup", "devicetype", "share", "membership", "invitation", "auditevent", "tenant", "user"]


@pytest.fixture
def two(world, other):
    """Both tenants with a share and an invitation each, so every model has rows on both sides."""
    for w in (world, other):
        w.share = services.create_share(actor=w.owner, grantee=w.alice, device=w.lamp, level=Level.CONTROL)
        w.invitation = services.create_invitation(actor=w.owner, email=f"guest@{w.tenant.slug}.test",
                                                   device=w.lock, level=Level.VIEW)
    return world, other


def objects_of(w):
    membership = Membership.objects.filter(tenant=w.tenant, user=w.alice).get()
    event = AuditEvent.objects.filter(tenant=w.tenant).first()
    return {"device": w.lamp, "devicegroup": w.group, "devicetype": w.type, "share": w.share,
            "membership": membership, "invitation": w.invitation, "auditevent": event,
            "tenant": w.tenant, "user": w.alice}


def url(model, view, *args):
    return reverse(f"admin:devices_{model}_{view}", args=args)


@pytest.fixture
def as_admin_a(client, two):
    client.force_login(two[0].admin)
    return client


@pytest.mark.parametrize("model", MODELS)
def test_list_shows_own_tenant_only(as_admin_a, two, model):
    mine, theirs = (objects_of(w)[model] for w in two)
    page = as_admin_a.get(url(model, "changelist"))
    assert page.status_code == 200
    ids = {obj.pk for obj in page.context["cl"].result_list}
    assert mine.pk in ids and theirs.pk not in ids
    assert "Globex" not in page.content.decode()  # not even in the filters


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("view", ["change", "delete", "history"])
def test_other_tenants_object_is_404(as_admin_a, two, model, view):
    theirs = objects_of(two[1])[model]
    assert as_admin_a.get(url(model, view, theirs.pk)).status_code == 404
    assert as_admin_a.post(url(model, view, theirs.pk), {"post": "yes"}).status_code == 404


@pytest.mark.parametrize("model", MODELS)
def test_own_object_opens(as_admin_a, two, model):
    assert as_admin_a.get(url(model, "change", objects_of(two[0])[model].pk)).status_code == 200


def test_being_a_member_elsewhere_shows_nothing_of_that_tenant(as_admin_a, two, admin_user):
    world, other = two
    services.add_member(actor=admin_user, tenant=other.tenant, user=world.admin)
    services.create_share(actor=other.owner, grantee=world.admin, device=other.lock, level=Level.VIEW)
    for model in MODELS:
        ids = {obj.pk for obj in as_admin_a.get(url(model, "changelist")).context["cl"].result_list}
        assert not ids & {o.pk for o in objects_of(other).values() if o._meta.model_name == model}, model
    assert as_admin_a.get(url("tenant", "change", other.tenant.pk)).status_code == 404
    assert as_admin_a.get(url("device", "change", other.lock.pk)).status_code == 404


def test_other_tenants_delete_is_refused_and_nothing_changes(as_admin_a, two):
    theirs = two[1].lamp
    assert as_admin_a.post(url("device", "delete", theirs.pk), {"post": "yes"}).status_code == 404
    assert Device.objects.filter(pk=theirs.pk).exists()


def test_bulk_delete_is_not_offered(as_admin_a, two):
    # It would skip each deletion's own checks; objects are deleted from their page.
    page = as_admin_a.get(url("device", "changelist"))
    assert "delete_selected" not in page.content.decode()
    as_admin_a.post(url("device", "changelist"), {"action": "delete_selected", "_selected_action": [two[0].lamp.pk],
                                                  "post": "yes"})
    assert Device.objects.filter(pk=two[0].lamp.pk).exists()


def test_superuser_sees_every_tenant(client, two, admin_user):
    client.force_login(admin_user)
    page = client.get(url("device", "changelist"))
    ids = {d.pk for d in page.context["cl"].result_list}
    assert {two[0].lamp.pk, two[1].lamp.pk} <= ids


def test_staff_member_without_admin_role_is_kept_out(client, world):
    world.alice.is_staff = True
    world.alice.save()
    client.force_login(world.alice)
    assert client.get(url("device", "changelist")).status_code == 403
    assert client.get(url("device", "change", world.lamp.pk)).status_code in (403, 404)


def test_device_page_lists_shares_and_effective_access(as_admin_a, two):
    world = two[0]
    services.create_share(actor=world.owner, grantee=world.bob, group=world.group, level=Level.VIEW)
    page = as_admin_a.get(url("device", "change", world.lamp.pk)).content.decode()
    table = page[page.index('class="effective-access"'):]
    table = table[: table.index("</table>")]
    rows = {cells[0]: cells[1:]
            for cells in (re.findall(r"<td>(.*?)</td>", row) for row in table.split("<tr>")) if cells}
    assert rows == {
        world.owner.email: ["owner", "ownership", "—", "any hour", "in force"],
        world.alice.email: ["control", "direct share", "—", "any hour", "in force"],
        world.bob.email: ["view", "group Home", "—", "any hour", "in force"],
    }
    inline = page[page.index('id="shares-group"'):]
    assert "Shares of this device" in inline
    assert f"control on Lamp ({world.lamp.thing_name}) to {world.alice.email}" in inline


class TestWritesGoThroughServices:
    def test_add_device_is_audited_as_admin_source(self, as_admin_a, two):
        world = two[0]
        response = as_admin_a.post(url("device", "add"), {
            "tenant": world.tenant.pk, "owner": world.bob.pk, "name": "Porch light",
            "device_type": world.type.pk, "thing_name": "", "group": "",
        })
        assert response.status_code == 302, response.content.decode()[:2000]
        device = Device.objects.get(name="Porch light")
        assert device.owner == world.bob and device.thing_name.startswith("d-")
        event = AuditEvent.objects.get(action="device.register", object_id=str(device.pk))
        assert (event.actor, event.source) == (world.admin, "admin")

    def test_refused_share_shows_the_reason_and_writes_nothing(self, as_admin_a, two):
        world = two[0]
        before = (Share.objects.count(), AuditEvent.objects.count())
        page = as_admin_a.post(url("share", "add"), {
            "device": world.lock.pk, "grantee": world.owner.pk, "level": Level.VIEW,
        })
        assert page.status_code == 200
        assert "The owner already has full access." in page.content.decode()
        assert (Share.objects.count(), AuditEvent.objects.count()) == before

    def test_cannot_pick_another_tenants_objects(self, as_admin_a, two):
        world, other = two
        page = as_admin_a.post(url("share", "add"), {
            "device": other.lock.pk, "grantee": world.bob.pk, "level": Level.VIEW,
        })
        assert page.status_code == 200 and "Select a valid choice" in page.content.decode()
        assert not Share.objects.filter(device=other.lock, grantee=world.bob).exists()

    def test_change_device_owner_is_a_transfer(self, as_admin_a, two):
        world = two[0]
        # The read-only shares inline still posts its management form, as a browser would.
        inline = {"shares-TOTAL_FORMS": 0, "shares-INITIAL_FORMS": 0}
        response = as_admin_a.post(url("device", "change", world.lamp.pk), {
            "name": "Lamp", "owner": world.carol.pk, "group": "", **inline,
        })
        assert response.status_code == 302
        assert Device.objects.get(pk=world.lamp.pk).owner == world.carol
        assert AuditEvent.objects.filter(action="device.transfer", source="admin").count() == 1
        world.share.refresh_from_db()
        assert world.share.revoked_at is not None

    def test_update_share_level(self, as_admin_a, two):
        share = two[0].share
        response = as_admin_a.post(url("share", "change", share.pk), {
            "level": Level.VIEW, "starts_at_0": "", "starts_at_1": "", "expires_at_0": "", "expires_at_1": "",
        })
        assert response.status_code == 302, response.content.decode()[:3000]
        share.refresh_from_db()
        assert share.level == Level.VIEW
        assert AuditEvent.objects.filter(action="share.update", object_id=str(share.pk)).exists()

    def test_a_stored_schedule_that_no_longer_reads_is_shown_not_a_500(self, as_admin_a, two):
        world = two[0]
        share = two[0].share
        Share.objects.filter(pk=share.pk).update(
            schedule={"timezone": "Mars/Olympus", "windows": [{"days": ["tue"], "start": "09:00", "end": "12:00"}]})
        for page in (url("share", "change", share.pk), url("share", "changelist"), url("device", "change",
                                                                                         world.lamp.pk)):
            response = as_admin_a.get(page)
            assert response.status_code == 200, page
            assert "unreadable (Mars/Olympus)" in response.content.decode(), page

    def test_revoke_selected_action_cascades(self, as_admin_a, two):
        world, other = two
        parent = services.create_share(actor=world.owner, grantee=world.bob, device=world.lock, level=Level.MANAGE,
                                       can_reshare=True)
        child = services.create_share(actor=world.bob, grantee=world.carol, device=world.lock, level=Level.VIEW)
        as_admin_a.post(url("share", "changelist"), {
            "action": "revoke_selected", "_selected_action": [parent.pk, other.share.pk],
        })
        # The other tenant's share is not even in the queryset; ours and its re-share are revoked.
        for share in (parent, child, other.share):
            share.refresh_from_db()
        assert parent.revoked_at and child.revoked_at and other.share.revoked_at is None
        assert AuditEvent.objects.filter(action="share.revoke", source="admin").count() == 2

    def test_only_a_superuser_enrols_an_existing_account(self, as_admin_a, two, client, admin_user,
                                                         django_user_model):
        world = two[0]
        newcomer = django_user_model.objects.create_user(email="new@example.test", password="x")
        form = {"tenant": world.tenant.pk, "email": "NEW@example.test", "role": "member"}
        # Tenant admins cannot pull accounts in (nor probe which emails exist): people accept invitations.
        assert as_admin_a.post(url("membership", "add"), form).status_code == 403
        assert not Membership.objects.filter(user=newcomer).exists()
        client.force_login(admin_user)
        assert client.post(url("membership", "add"), form).status_code == 302
        assert Membership.objects.filter(tenant=world.tenant, user=newcomer).exists()
        page = client.post(url("membership", "add"), form | {"email": "nobody@example.test"})
        assert "No active account" in page.content.decode()

    def test_deleting_shared_objects_goes_through_services(self, as_admin_a, two):
        world = two[0]
        services.create_share(actor=world.owner, grantee=world.bob, group=world.group, level=Level.VIEW)
        assert as_admin_a.get(url("devicegroup", "delete", world.group.pk)).status_code == 200
        assert as_admin_a.post(url("devicegroup", "delete", world.group.pk), {"post": "yes"}).status_code == 302
        assert not DeviceGroup.objects.filter(pk=world.group.pk).exists()
        assert AuditEvent.objects.filter(action="group.delete", source="admin").count() == 1
        # The lamp has a share and an invitation hanging off it; both go with it.
        assert as_admin_a.post(url("device", "delete", world.lamp.pk), {"post": "yes"}).status_code == 302
        assert not Device.objects.filter(pk=world.lamp.pk).exists()
        assert AuditEvent.objects.filter(action="device.delete", source="admin").count() == 1

    def test_refused_delete_is_a_message_not_an_error_page(self, as_admin_a, two):
        world = two[0]
        page = as_admin_a.post(url("devicetype", "delete", world.type.pk), {"post": "yes"}, follow=True)
        assert page.status_code == 200 and "Cannot delete device type" in page.content.decode()
        assert DeviceType.objects.filter(pk=world.type.pk).exists()
        membership = Membership.objects.get(tenant=world.tenant, user=world.owner)
        page = as_admin_a.post(url("membership", "delete", membership.pk), {"post": "yes"}, follow=True)
        assert "still owns devices" in page.content.decode()
        assert Membership.objects.filter(pk=membership.pk).exists()

    def test_invalid_inline_rolls_the_service_write_back(self, as_admin_a, two):
        world = two[0]
        before = AuditEvent.objects.count()
        page = as_admin_a.post(url("device", "change", world.lamp.pk), {"name": "Renamed", "owner": world.owner.pk})
        assert page.status_code == 200  # the inline's management form is missing: the page shows an error
        assert Device.objects.get(pk=world.lamp.pk).name == "Lamp"
        assert AuditEvent.objects.count() == before

    def test_cancel_invitations_action(self, as_admin_a, two):
        world = two[0]
        as_admin_a.post(url("invitation", "changelist"), {
            "action": "cancel_selected", "_selected_action": [world.invitation.pk],
        })
        world.invitation.refresh_from_db()
        assert world.invitation.status == Invitation.Status.CANCELLED


def test_audit_events_are_read_only(as_admin_a, two):
    event = objects_of(two[0])["auditevent"]
    assert as_admin_a.post(url("auditevent", "change", event.pk), {"action": "forged"}).status_code == 403
    assert as_admin_a.get(url("auditevent", "add")).status_code == 403
    event.refresh_from_db()
    assert event.action != "forged"


# A list's hours column: one window a line, then the zone.
HOURS_CELL = '<span class="nowrap">tue 09:00-12:00</span><br><span class="nowrap">Europe/Brussels</span>'


class TestSchedules:
    """Weekly hours in the console: a time zone and one window a line (docs/console.md#weekly-schedules)."""

    TUESDAYS = {"timezone": "Europe/Brussels", "windows": [{"days": ["tue"], "start": "09:00", "end": "12:00"}]}

    def add_share(self, client, world, **fields):
        return client.post(url("share", "add"), {
            "device": world.lock.pk, "grantee": world.bob.pk, "level": Level.CONTROL, **fields,
        })

    def test_add_a_share_with_hours(self, as_admin_a, two):
        world = two[0]
        response = self.add_share(as_admin_a, world, schedule_zone="Europe/Brussels",
                                  schedule="tue 09:00-12:00\r\nsat-sun 10:00-11:30\r\n")
        assert response.status_code == 302, response.content.decode()[:3000]
        share = Share.objects.get(grantee=world.bob)
        assert share.schedule == {"timezone": "Europe/Brussels", "windows": [
            {"days": ["tue"], "start": "09:00", "end": "12:00"},
            {"days": ["sat", "sun"], "start": "10:00", "end": "11:30"}]}
        event = AuditEvent.objects.get(action="share.create", object_id=str(share.pk))
        assert (event.source, event.changes["schedule"]) == ("admin", share.schedule)

    @pytest.mark.parametrize("zone, text, message", [
        ("Europe/Brussels", "tue 09:00-25:00", "Line 1 (tue 09:00-25:00): A window&#x27;s end must be between"),
        ("Europe/Brussels", "tue 09:00-10:00\nsometimes", "Line 2 (sometimes)"),
        ("", "tue 09:00-12:00", "Choose the time zone"),
        ("Mars/Olympus", "tue 09:00-12:00", "Select a valid choice"),
    ])
    def test_bad_hours_show_the_reason_and_write_nothing(self, as_admin_a, two, zone, text, message):
        world = two[0]
        before = (Share.objects.count(), AuditEvent.objects.count())
        page = self.add_share(as_admin_a, world, schedule_zone=zone, schedule=text)
        assert page.status_code == 200
        assert message in page.content.decode()
        assert (Share.objects.count(), AuditEvent.objects.count()) == before

    def test_edit_shows_the_hours_and_changes_or_clears_them(self, as_admin_a, two):
        world = two[0]
        share = services.create_share(actor=world.owner, grantee=world.bob, device=world.lock, level=Level.VIEW,
                                      schedule=self.TUESDAYS)
        form = as_admin_a.get(url("share", "change", share.pk)).context["adminform"].form
        assert (form.initial["schedule_zone"], form.initial["schedule"]) == ("Europe/Brussels", "tue 09:00-12:00")
        blank_window = {"starts_at_0": "", "starts_at_1": "", "expires_at_0": "", "expires_at_1": ""}
        response = as_admin_a.post(url("share", "change", share.pk), {
            "level": Level.VIEW, **blank_window, "schedule_zone": "Europe/London", "schedule": "mon-fri 22:00-06:00"})
        assert response.status_code == 302, response.content.decode()[:3000]
        share.refresh_from_db()
        assert share.schedule == {"timezone": "Europe/London", "windows": [
            {"days": ["mon", "tue", "wed", "thu", "fri"], "start": "22:00", "end": "06:00"}]}
        as_admin_a.post(url("share", "change", share.pk), {
            "level": Level.VIEW, **blank_window, "schedule_zone": "Europe/London", "schedule": ""})
        share.refresh_from_db()
        assert share.schedule is None

    def test_saving_other_fields_leaves_the_hours_alone(self, as_admin_a, two):
        world = two[0]
        share = services.create_share(actor=world.owner, grantee=world.bob, device=world.lock, level=Level.VIEW,
                                      schedule=self.TUESDAYS)
        response = as_admin_a.post(url("share", "change", share.pk), {
            "level": Level.CONTROL, "starts_at_0": "", "starts_at_1": "", "expires_at_0": "", "expires_at_1": "",
            "schedule_zone": "Europe/Brussels", "schedule": "tue 09:00-12:00\r\n"})
        assert response.status_code == 302
        event = AuditEvent.objects.get(action="share.update", object_id=str(share.pk))
        assert event.changes["before"]["schedule"] == event.changes["after"]["schedule"] == self.TUESDAYS
        assert event.changes["after"]["level"] == "control"

    def test_lists_and_read_only_pages_show_the_hours(self, as_admin_a, two):
        world = two[0]
        share = services.create_share(actor=world.owner, grantee=world.bob, device=world.lock, level=Level.VIEW,
                                      schedule=self.TUESDAYS)
        listing = as_admin_a.get(url("share", "changelist")).content.decode()
        assert HOURS_CELL in listing and "any hour" in listing
        services.revoke_share(actor=world.owner, share=share)
        revoked = as_admin_a.get(url("share", "change", share.pk)).content.decode()
        assert "tue 09:00-12:00 (Europe/Brussels)" in revoked and 'name="schedule"' not in revoked
        device_page = as_admin_a.get(url("device", "change", world.lock.pk)).content.decode()
        assert "tue 09:00-12:00 (Europe/Brussels)" in device_page

    def test_invite_with_hours(self, as_admin_a, two):
        world = two[0]
        response = as_admin_a.post(url("invitation", "add"), {
            "device": world.lock.pk, "email": "cleaner@example.test", "level": Level.CONTROL,
            "schedule_zone": "Europe/Brussels", "schedule": "tue 09:00-12:00"})
        assert response.status_code == 302, response.content.decode()[:3000]
        invitation = Invitation.objects.get(email="cleaner@example.test")
        assert invitation.schedule == self.TUESDAYS
        page = as_admin_a.get(url("invitation", "change", invitation.pk)).content.decode()
        assert "tue 09:00-12:00 (Europe/Brussels)" in page
        assert HOURS_CELL in as_admin_a.get(url("invitation", "changelist")).content.decode()
