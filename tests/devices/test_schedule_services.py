"""Weekly schedules through the services: creating, changing, re-sharing
within the parent's hours, clamping re-shares, invitations and the audit
trail (docs/sharing.md#weekly-schedules)."""
from datetime import UTC, datetime, time, timedelta

import pytest
from django.utils import timezone

from devices import schedules, services
from devices.errors import DomainError, ErrorCode
from devices.models import AuditEvent, Invitation, Level, Share
from devices.selectors import effective_access
from devices.services.terms import GrantTerms
from tests.factories import member

pytestmark = pytest.mark.django_db

BRUSSELS = "Europe/Brussels"


def hours(zone=BRUSSELS, *windows):
    return {"timezone": zone, "windows": [{"days": days, "start": start, "end": end} for days, start, end in windows]}


WEEKDAYS = hours(BRUSSELS, (["mon", "tue", "wed", "thu", "fri"], "08:00", "18:00"))
TUESDAYS = hours(BRUSSELS, (["tue"], "09:00", "12:00"))


def days_from_today(*offsets) -> list[str]:
    today = timezone.now().astimezone(UTC).weekday()
    return [schedules.DAYS[(today + offset) % 7] for offset in sorted(offsets)]


def in_force_now() -> dict:
    """All of yesterday, today and tomorrow (UTC): in force whenever the test runs."""
    return hours("UTC", (days_from_today(-1, 0, 1), "00:00", "24:00"))


def not_in_force_now() -> dict:
    """A morning three days from now (UTC): never in force while the test runs."""
    return hours("UTC", (days_from_today(3), "09:00", "12:00"))


def refused(code: ErrorCode, call, **kwargs) -> DomainError:
    before = (Share.objects.count(), Invitation.objects.count(), AuditEvent.objects.count(),
              sorted(Share.objects.values_list("pk", "schedule", "revoked_at")))
    with pytest.raises(DomainError) as caught:
        call(**kwargs)
    assert caught.value.code is code, caught.value
    after = (Share.objects.count(), Invitation.objects.count(), AuditEvent.objects.count(),
             sorted(Share.objects.values_list("pk", "schedule", "revoked_at")))
    assert after == before, "a refused write changed something"
    return caught.value


def share(world, grantee, *, actor=None, device=None, level=Level.VIEW, **kw) -> Share:
    return services.create_share(actor=actor or world.owner, grantee=grantee, device=device or world.lock,
                                 level=level, **kw)


def reshare_parent(world, schedule=None) -> Share:
    return share(world, world.alice, level=Level.MANAGE, can_reshare=True, schedule=schedule)


class TestCreate:
    def test_the_schedule_is_stored_in_its_json_form_and_audited(self, world):
        sent = hours(BRUSSELS, (["thu", "tue"], "09:00", "12:00"))
        created = share(world, world.alice, schedule=sent)
        created.refresh_from_db()
        stored = hours(BRUSSELS, (["tue", "thu"], "09:00", "12:00"))
        assert created.schedule == stored
        assert GrantTerms.of(created).schedule == schedules.parse(sent)
        event = AuditEvent.objects.get(action="share.create", object_id=str(created.pk))
        assert event.changes["schedule"] == stored

    def test_an_unscheduled_share_stores_null(self, world):
        created = share(world, world.alice)
        created.refresh_from_db()
        assert created.schedule is None
        assert AuditEvent.objects.get(action="share.create", object_id=str(created.pk)).changes["schedule"] is None

    def test_an_identical_repeat_returns_the_share_and_other_hours_conflict(self, world):
        first = share(world, world.alice, schedule=TUESDAYS)
        assert share(world, world.alice, schedule=TUESDAYS).pk == first.pk
        refused(ErrorCode.SHARE_EXISTS, share, world=world, grantee=world.alice, schedule=WEEKDAYS)

    def test_the_same_hours_in_another_order_return_the_share(self, world):
        sent = hours(BRUSSELS, (["thu"], "14:00", "16:00"), (["tue"], "09:00", "12:00"))
        first = share(world, world.alice, schedule=sent)
        again = share(world, world.alice, schedule={**sent, "windows": sent["windows"][::-1]})
        assert again.pk == first.pk and Share.objects.filter(grantee=world.alice).count() == 1

    @pytest.mark.parametrize("schedule, code", [
        ("tue 09:00-12:00", ErrorCode.SCHEDULE_INVALID),
        (hours("Atlantis/Capital", (["tue"], "09:00", "12:00")), ErrorCode.TIME_ZONE_UNKNOWN),
        (hours(BRUSSELS, (["tue"], "25:00", "26:00")), ErrorCode.SCHEDULE_INVALID),
        (hours(BRUSSELS, ([], "09:00", "12:00")), ErrorCode.SCHEDULE_INVALID),
        (hours(BRUSSELS, *[(["mon"], f"{h:02d}:00", f"{h:02d}:30") for h in range(15)]), ErrorCode.SCHEDULE_INVALID),
    ])
    def test_bad_hours_are_refused_and_write_nothing(self, world, schedule, code):
        error = refused(code, share, world=world, grantee=world.alice, schedule=schedule)
        assert error.field == "schedule"

    def test_hours_that_never_fall_between_start_and_expiry_are_refused(self, world):
        tomorrow = (timezone.now() + timedelta(days=1)).astimezone(UTC).date()
        at = lambda hh, mm: datetime.combine(tomorrow, time(hh, mm), UTC)  # noqa: E731
        nine_to_ten = hours("UTC", (list(schedules.DAYS), "09:00", "10:00"))
        error = refused(ErrorCode.SCHEDULE_NEVER_IN_FORCE, share, world=world, grantee=world.alice,
                        schedule=nine_to_ten, starts_at=at(10, 30), expires_at=at(11, 30))
        assert error.field == "schedule"
        created = share(world, world.alice, schedule=nine_to_ten, starts_at=at(8, 30), expires_at=at(9, 30))
        # Moving the expiry before the hours is refused the same way.
        refused(ErrorCode.SCHEDULE_NEVER_IN_FORCE, services.update_share, actor=world.owner, share=created,
                expires_at=at(8, 45))


class TestUpdate:
    def test_set_change_and_clear_the_hours(self, world):
        created = share(world, world.alice)
        services.update_share(actor=world.owner, share=created, schedule=TUESDAYS)
        created.refresh_from_db()
        assert created.schedule == TUESDAYS
        services.update_share(actor=world.owner, share=created, schedule=None)
        created.refresh_from_db()
        assert created.schedule is None
        updates = AuditEvent.objects.filter(action="share.update", object_id=str(created.pk)).order_by("pk")
        assert [(e.changes["before"]["schedule"], e.changes["after"]["schedule"]) for e in updates] == [
            (None, TUESDAYS), (TUESDAYS, None)]

    def test_leaving_the_schedule_out_keeps_it(self, world):
        created = share(world, world.alice, schedule=TUESDAYS)
        services.update_share(actor=world.owner, share=created, level=Level.CONTROL)
        created.refresh_from_db()
        assert (created.level, created.schedule) == (Level.CONTROL, TUESDAYS)

    def test_bad_hours_change_nothing(self, world):
        created = share(world, world.alice, schedule=TUESDAYS)
        refused(ErrorCode.SCHEDULE_INVALID, services.update_share, actor=world.owner, share=created,
                schedule={"timezone": BRUSSELS, "windows": "tue"})
        refused(ErrorCode.SCHEDULE_INVALID, services.update_share, actor=world.owner, share=created,
                level=Level.CONTROL, schedule=[])


class TestReshare:
    def test_a_reshare_stays_inside_its_parents_hours(self, world):
        parent = reshare_parent(world, WEEKDAYS)
        error = refused(ErrorCode.OUTSIDE_PARENT_SCHEDULE, share, world=world, actor=world.alice, grantee=world.bob)
        assert error.field == "schedule" and "mon-fri 08:00-18:00 (Europe/Brussels)" in error.messages[0]
        for wider in (hours(BRUSSELS, (["mon", "sat"], "09:00", "12:00")),
                      hours(BRUSSELS, (["tue"], "07:00", "12:00")),
                      {**TUESDAYS, "timezone": "Europe/Paris"}):  # the same hours, another clock
            refused(ErrorCode.OUTSIDE_PARENT_SCHEDULE, share, world=world, actor=world.alice, grantee=world.bob,
                    schedule=wider)
        child = share(world, world.bob, actor=world.alice, schedule=TUESDAYS)
        assert child.parent == parent

    def test_a_resharer_cannot_widen_the_hours_afterwards(self, world):
        reshare_parent(world, WEEKDAYS)
        child = share(world, world.bob, actor=world.alice, schedule=TUESDAYS)
        refused(ErrorCode.OUTSIDE_PARENT_SCHEDULE, services.update_share, actor=world.alice, share=child,
                schedule=None)
        services.update_share(actor=world.alice, share=child, schedule=hours(BRUSSELS, (["wed"], "09:00", "10:00")))

    @pytest.mark.parametrize("editor", ["owner", "admin"])
    def test_the_owner_or_an_admin_cannot_widen_a_reshare_past_its_parent_either(self, world, editor):
        """The re-share stays linked to alice's grant, so it must stay inside it whoever edits it."""
        now = timezone.now()
        share(world, world.alice, level=Level.MANAGE, can_reshare=True, schedule=TUESDAYS,
              starts_at=now - timedelta(hours=1), expires_at=now + timedelta(days=30))
        child = share(world, world.bob, actor=world.alice, schedule=TUESDAYS, starts_at=now,
                      expires_at=now + timedelta(days=20))
        actor = getattr(world, editor)
        for code, change in ((ErrorCode.OUTSIDE_PARENT_SCHEDULE, {"schedule": None}),
                             (ErrorCode.OUTSIDE_PARENT_SCHEDULE, {"schedule": WEEKDAYS}),
                             (ErrorCode.OUTLASTS_PARENT, {"expires_at": None}),
                             (ErrorCode.OUTLASTS_PARENT, {"expires_at": now + timedelta(days=40)}),
                             (ErrorCode.STARTS_BEFORE_PARENT, {"starts_at": None})):
            refused(code, services.update_share, actor=actor, share=child, **change)
        # Inside the parent the owner may still change it.
        narrower = hours(BRUSSELS, (["tue"], "10:00", "11:00"))
        services.update_share(actor=actor, share=child, schedule=narrower, level=Level.CONTROL)
        child.refresh_from_db()
        assert (child.schedule, child.level) == (narrower, Level.CONTROL)

    def test_an_unscheduled_parent_lets_a_reshare_pick_any_hours(self, world):
        reshare_parent(world)
        assert share(world, world.bob, actor=world.alice, schedule=TUESDAYS).schedule == TUESDAYS

    def test_managing_follows_the_shares_status_not_its_hours(self, world):
        """Outside its hours a manage share gives no access, yet its holder
        still re-shares (within those hours) and renames the device."""
        hours_later = not_in_force_now()
        reshare_parent(world, hours_later)
        assert effective_access(user=world.alice, device=world.lock) is None
        child = share(world, world.bob, actor=world.alice, schedule=hours_later)
        assert child.parent.grantee == world.alice
        services.rename_device(actor=world.alice, device=world.lock, name="Front door")
        world.lock.refresh_from_db()
        assert world.lock.name == "Front door"


class TestClampingReshares:
    """The owner narrows the hours of alice's re-shareable share; what alice
    re-shared keeps only the hours left inside (or goes)."""

    @pytest.fixture
    def tree(self, world):
        parent = reshare_parent(world)
        paris = member(world.tenant, email="paris@acme.test")
        sat = member(world.tenant, email="sat@acme.test")
        inside = member(world.tenant, email="inside@acme.test")
        grandchild_grantee = member(world.tenant, email="grand@acme.test")
        children = {
            "any hour": share(world, world.bob, actor=world.alice, level=Level.MANAGE, can_reshare=True),
            "early tuesdays": share(world, world.carol, actor=world.alice,
                                    schedule=hours(BRUSSELS, (["tue"], "07:00", "09:30"))),
            "saturdays": share(world, sat, actor=world.alice, schedule=hours(BRUSSELS, (["sat"], "10:00", "12:00"))),
            "paris": share(world, paris, actor=world.alice, schedule={**TUESDAYS, "timezone": "Europe/Paris"}),
            "inside": share(world, inside, actor=world.alice, schedule=TUESDAYS),
        }
        children["grandchild"] = share(world, grandchild_grantee, actor=world.bob)
        return parent, children

    def test_each_reshare_keeps_the_hours_left(self, world, tree):
        parent, children = tree
        services.update_share(actor=world.owner, share=parent, schedule=WEEKDAYS)
        for child in children.values():
            child.refresh_from_db()
        assert children["any hour"].schedule == WEEKDAYS
        assert children["grandchild"].schedule == WEEKDAYS  # clamped in turn to its new parent
        assert children["early tuesdays"].schedule == hours(BRUSSELS, (["tue"], "08:00", "09:30"))
        assert children["inside"].schedule == TUESDAYS
        assert children["saturdays"].revoked_at is not None  # no hour in common
        assert children["paris"].revoked_at is not None  # another clock: cannot be compared, so it goes
        assert all(children[name].revoked_at is None for name in ("any hour", "grandchild", "early tuesdays",
                                                                  "inside"))

    def test_the_clamp_is_audited_with_its_reason(self, world, tree):
        parent, children = tree
        services.update_share(actor=world.owner, share=parent, schedule=WEEKDAYS)
        clamped = AuditEvent.objects.filter(action="share.update", changes__reason="share.parent_narrowed")
        by_share = {event.object_id: event.changes for event in clamped}
        assert set(by_share) == {str(children[name].pk) for name in ("any hour", "grandchild", "early tuesdays")}
        assert by_share[str(children["any hour"].pk)]["after"]["schedule"] == WEEKDAYS
        revoked = AuditEvent.objects.filter(action="share.revoke", changes__reason="share.parent_narrowed")
        assert {event.object_id for event in revoked} == {str(children[name].pk) for name in ("saturdays", "paris")}

    def test_hours_that_would_need_too_many_windows_revoke_the_reshare(self, world):
        parent = reshare_parent(world)
        # Fourteen Monday windows, h:00 to h:50 ...
        child = share(world, world.bob, actor=world.alice,
                      schedule=hours(BRUSSELS, *[(["mon"], f"{h:02d}:00", f"{h:02d}:50") for h in range(14)]))
        # ... cut by thirteen h:30 to h+1:20: 26 pieces, more than a schedule holds.
        cutting = hours(BRUSSELS, *[(["mon"], f"{h:02d}:30", f"{h + 1:02d}:20") for h in range(13)])
        services.update_share(actor=world.owner, share=parent, schedule=cutting)
        child.refresh_from_db()
        assert child.revoked_at is not None


class TestInvitations:
    def test_the_invitation_carries_the_hours_into_the_share(self, world, django_user_model):
        invitation = services.create_invitation(actor=world.owner, email="cleaner@example.test", device=world.lock,
                                                level=Level.CONTROL, schedule=TUESDAYS)
        invitation.refresh_from_db()
        assert invitation.schedule == TUESDAYS
        assert AuditEvent.objects.get(action="invitation.create").changes["schedule"] == TUESDAYS
        cleaner = django_user_model.objects.create_user(email="cleaner@example.test", password="x")
        accepted = services.accept_invitation(actor=cleaner, invitation=invitation)
        accepted.refresh_from_db()
        assert (accepted.level, accepted.schedule) == (Level.CONTROL, TUESDAYS)

    def test_bad_hours_send_no_invitation(self, world):
        refused(ErrorCode.TIME_ZONE_UNKNOWN, services.create_invitation, actor=world.owner,
                email="x@example.test", device=world.lock, level=Level.VIEW,
                schedule=hours("Brussels", (["tue"], "09:00", "12:00")))

    def test_an_invitation_to_reshare_stays_in_the_parents_hours_when_sent_and_accepted(
            self, world, django_user_model):
        parent = reshare_parent(world, WEEKDAYS)
        refused(ErrorCode.OUTSIDE_PARENT_SCHEDULE, services.create_invitation, actor=world.alice,
                email="eve@example.test", device=world.lock, level=Level.VIEW)
        invitation = services.create_invitation(actor=world.alice, email="eve@example.test", device=world.lock,
                                                level=Level.VIEW, schedule=TUESDAYS)
        # The owner moves alice's hours to the weekend: the invitation no longer fits.
        services.update_share(actor=world.owner, share=parent,
                              schedule=hours(BRUSSELS, (["sat", "sun"], "08:00", "18:00")))
        eve = django_user_model.objects.create_user(email="eve@example.test", password="x")
        refused(ErrorCode.OUTSIDE_PARENT_SCHEDULE, services.accept_invitation, actor=eve, invitation=invitation)
