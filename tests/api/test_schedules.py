"""Weekly schedules through the API: on shares and invitations, refused
with a code and without a trace when wrong, and in the effective-access
answer, now or at `?at=` (docs/api.md, docs/sharing.md#weekly-schedules)."""
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from devices import services
from devices.errors import ErrorCode
from devices.models import AuditEvent, Invitation, Level, Share
from devices.schedules import DAYS
from tests.support.api import assert_error, tenant_url, url

pytestmark = pytest.mark.django_db

BRUSSELS = ZoneInfo("Europe/Brussels")
TUESDAYS = {"timezone": "Europe/Brussels", "windows": [{"days": ["tue"], "start": "09:00", "end": "12:00"}]}
WEEKDAYS = {"timezone": "Europe/Brussels",
            "windows": [{"days": ["mon", "tue", "wed", "thu", "fri"], "start": "08:00", "end": "18:00"}]}


def post_share(client, world, email, **terms):
    return client.post(tenant_url("device-shares", world, device=world.lock.pk),
                       {"grantee": email, "level": "control", **terms}, format="json")


def state():
    """Everything a schedule write could touch."""
    return (sorted(Share.objects.values_list("pk", "level", "schedule", "revoked_at")),
            sorted(Invitation.objects.values_list("pk", "status", "schedule")), AuditEvent.objects.count())


def next_tuesday(at_hour: int, minute: int = 0) -> datetime:
    """Brussels wall time on the first Tuesday after tomorrow."""
    day = timezone.now().astimezone(BRUSSELS).date() + timedelta(days=2)
    day += timedelta(days=(1 - day.weekday()) % 7)
    return datetime(day.year, day.month, day.day, at_hour, minute, tzinfo=BRUSSELS)


def parsed(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value.replace("Z", "+00:00"))


class TestOnShares:
    def test_create_read_and_repeat(self, world, client_for):
        owner = client_for(world.owner)
        created = post_share(owner, world, world.alice.email, schedule=TUESDAYS)
        assert created.status_code == 201, created.content
        assert created.json()["schedule"] == TUESDAYS
        shown = owner.get(tenant_url("share-detail", world, pk=created.json()["id"])).json()
        assert shown["schedule"] == TUESDAYS
        received = client_for(world.alice).get(tenant_url("share-list", world)).json()["results"]
        assert [row["schedule"] for row in received] == [TUESDAYS]
        again = post_share(owner, world, world.alice.email, schedule=TUESDAYS)
        assert again.status_code == 200 and again.json()["id"] == created.json()["id"]
        other = post_share(owner, world, world.alice.email, schedule=WEEKDAYS)
        assert_error(other, 409, "conflict", registry_code=ErrorCode.SHARE_EXISTS)

    def test_unscheduled_reads_as_null(self, world, client_for):
        created = post_share(client_for(world.owner), world, world.alice.email)
        assert created.status_code == 201 and created.json()["schedule"] is None

    def test_patch_sets_keeps_and_clears(self, world, client_for):
        share = services.create_share(actor=world.owner, grantee=world.alice, device=world.lock, level=Level.VIEW)
        owner, path = client_for(world.owner), tenant_url("share-detail", world, pk=share.pk)
        assert owner.patch(path, {"schedule": WEEKDAYS}, format="json").json()["schedule"] == WEEKDAYS
        assert owner.patch(path, {"level": "control"}, format="json").json()["schedule"] == WEEKDAYS
        assert owner.patch(path, {"schedule": None}, format="json").json()["schedule"] is None
        share.refresh_from_db()
        assert share.schedule is None

    def test_a_reshare_outside_the_parents_hours_is_400(self, world, client_for):
        services.create_share(actor=world.owner, grantee=world.alice, device=world.lock, level=Level.MANAGE,
                              can_reshare=True, schedule=WEEKDAYS)
        before = state()
        refused = post_share(client_for(world.alice), world, world.bob.email)
        body = assert_error(refused, 400, "invalid", registry_code=ErrorCode.OUTSIDE_PARENT_SCHEDULE)
        assert "schedule" in body["fields"]
        assert state() == before
        assert post_share(client_for(world.alice), world, world.bob.email, schedule=TUESDAYS).status_code == 201


BAD = [
    pytest.param({**TUESDAYS, "timezone": "Europe/Atlantis"}, ErrorCode.TIME_ZONE_UNKNOWN, id="unknown-zone"),
    pytest.param({**TUESDAYS, "windows": [{"days": ["tue"], "start": "25:00", "end": "26:00"}]},
                 ErrorCode.SCHEDULE_INVALID, id="25h"),
    pytest.param({**TUESDAYS, "windows": [{"days": [], "start": "09:00", "end": "12:00"}]},
                 ErrorCode.SCHEDULE_INVALID, id="no-days"),
    pytest.param({**TUESDAYS, "windows": [{"days": ["mon"], "start": f"{h:02d}:00", "end": f"{h:02d}:30"}
                                          for h in range(15)]}, ErrorCode.SCHEDULE_INVALID, id="15-windows"),
    pytest.param({**TUESDAYS, "windows": [{"days": "tue", "start": 9, "end": 12}]}, ErrorCode.SCHEDULE_INVALID,
                 id="wrong-types"),
    pytest.param({"timezone": ["Europe/Brussels"], "windows": TUESDAYS["windows"]}, ErrorCode.TIME_ZONE_UNKNOWN,
                 id="zone-list"),
    pytest.param("tue 09:00-12:00", ErrorCode.SCHEDULE_INVALID, id="a-string"),
    pytest.param(42, ErrorCode.SCHEDULE_INVALID, id="a-number"),
    pytest.param([TUESDAYS], ErrorCode.SCHEDULE_INVALID, id="a-list"),
]


class TestBadInput:
    @pytest.mark.parametrize("schedule, code", BAD)
    def test_create_share_or_invitation(self, world, client_for, schedule, code):
        before = state()
        for email in (world.alice.email, "newcomer@example.test"):
            response = post_share(client_for(world.owner), world, email, schedule=schedule)
            body = assert_error(response, 400, "invalid", registry_code=code)
            assert set(body["fields"]) == {"schedule"}
        assert state() == before

    @pytest.mark.parametrize("schedule, code", BAD)
    def test_patch(self, world, client_for, schedule, code):
        share = services.create_share(actor=world.owner, grantee=world.alice, device=world.lock, level=Level.VIEW,
                                      schedule=TUESDAYS)
        before = state()
        response = client_for(world.owner).patch(tenant_url("share-detail", world, pk=share.pk),
                                                 {"schedule": schedule, "level": "control"}, format="json")
        assert_error(response, 400, "invalid", registry_code=code)
        assert state() == before

    def test_hours_never_between_start_and_expiry(self, world, client_for):
        before = state()
        tuesday = next_tuesday(13)
        response = post_share(client_for(world.owner), world, world.alice.email, schedule=TUESDAYS,
                              starts_at=tuesday.isoformat(), expires_at=(tuesday + timedelta(hours=2)).isoformat())
        assert_error(response, 400, "invalid", registry_code=ErrorCode.SCHEDULE_NEVER_IN_FORCE)
        assert state() == before


class TestOnInvitations:
    def test_invite_repeat_accept(self, world, client_for, django_user_model):
        owner = client_for(world.owner)
        sent = post_share(owner, world, "Cleaner@Example.test", schedule=TUESDAYS)
        assert sent.status_code == 202, sent.content
        assert sent.json()["schedule"] == TUESDAYS
        repeat = post_share(owner, world, "cleaner@example.test", schedule=TUESDAYS)
        assert repeat.status_code == 200 and repeat.json()["id"] == sent.json()["id"]
        other_hours = post_share(owner, world, "cleaner@example.test", schedule=WEEKDAYS)
        assert_error(other_hours, 409, "conflict", registry_code=ErrorCode.INVITATION_PENDING)
        listed = owner.get(tenant_url("tenant-invitation-list", world)).json()["results"]
        assert [row["schedule"] for row in listed] == [TUESDAYS]
        cleaner = django_user_model.objects.create_user(email="cleaner@example.test", password="x")
        accepted = client_for(cleaner).post(url("invitation-accept", pk=sent.json()["id"]))
        assert accepted.status_code == 201 and accepted.json()["schedule"] == TUESDAYS

    def test_an_unscheduled_invitation_repeats_too(self, world, client_for):
        owner = client_for(world.owner)
        sent = post_share(owner, world, "guest@example.test")
        assert sent.status_code == 202 and sent.json()["schedule"] is None
        assert post_share(owner, world, "guest@example.test").json()["id"] == sent.json()["id"]


class TestEffectiveAccess:
    def access(self, client, world, **params):
        return client.get(tenant_url("device-access", world, device=world.lock.pk), params)

    def test_inside_and_outside_the_hours(self, world, client_for):
        services.create_share(actor=world.owner, grantee=world.alice, device=world.lock, level=Level.CONTROL,
                              schedule=TUESDAYS)
        alice = client_for(world.alice)
        inside = self.access(alice, world, at=next_tuesday(10).isoformat())
        assert inside.status_code == 200, inside.content
        body = inside.json()
        assert (body["level"], body["through"], body["in_force"], body["schedule"]) == (
            "control", "device_share", True, TUESDAYS)
        assert parsed(body["next_change"]) == next_tuesday(12)
        outside = self.access(alice, world, at=next_tuesday(12, 30).isoformat()).json()
        assert (outside["level"], outside["through"], outside["in_force"], outside["schedule"]) == (
            None, None, False, None)
        assert parsed(outside["next_change"]) == next_tuesday(9) + timedelta(days=7)

    def test_without_at_it_answers_for_now(self, world, client_for):
        body = self.access(client_for(world.owner), world).json()
        assert (body["level"], body["in_force"], body["schedule"], body["next_change"]) == (
            "owner", True, None, None)
        admin = self.access(client_for(world.admin), world).json()
        assert (admin["level"], admin["through"], admin["in_force"]) == (None, "tenant_admin", False)

    def test_an_offset_sent_as_a_plus_or_a_space(self, world, client_for):
        services.create_share(actor=world.owner, grantee=world.alice, device=world.lock, level=Level.CONTROL,
                              schedule=TUESDAYS)
        at = next_tuesday(10).isoformat()  # ...+01:00 or +02:00
        assert "+" in at
        path = tenant_url("device-access", world, device=world.lock.pk)
        for query in (at.replace("+", "%2B"), at):  # an unencoded + arrives as a space
            response = client_for(world.alice).get(f"{path}?at={query}")
            assert response.status_code == 200 and response.json()["in_force"], (query, response.content)

    @pytest.mark.parametrize("at, code", [
        ("2027-03-30T10:00:00", ErrorCode.NAIVE_TIME),
        ("tuesday morning", None),
        ("2027-13-45T10:00:00Z", None),
        ("", None),
    ])
    def test_a_bad_instant_is_400(self, world, client_for, at, code):
        response = self.access(client_for(world.owner), world, at=at)
        body = assert_error(response, 400, "invalid", registry_code=code)
        assert set(body["fields"]) == {"at"}

    def test_at_most_a_year_either_way(self, world, client_for):
        now = timezone.now()
        for far in (now + timedelta(days=400), now - timedelta(days=400)):
            assert_error(self.access(client_for(world.owner), world, at=far.isoformat()), 400, "invalid")
        within = self.access(client_for(world.owner), world, at=(now + timedelta(days=300)).isoformat())
        assert within.status_code == 200

    def test_the_access_list_rows_carry_the_hours(self, world, client_for):
        services.create_share(actor=world.owner, grantee=world.alice, device=world.lock, level=Level.MANAGE,
                              schedule={"timezone": "UTC", "windows": [{"days": list(DAYS), "start": "00:00",
                                                                        "end": "24:00"}]})
        rows = client_for(world.owner).get(tenant_url("device-access-list", world, device=world.lock.pk)).json()
        assert {row["user"]["email"]: row["schedule"] for row in rows} == {
            world.owner.email: None,
            world.alice.email: {"timezone": "UTC", "windows": [{"days": list(DAYS), "start": "00:00", "end": "24:00"}]},
        }

    def test_the_access_list_shows_people_outside_their_hours(self, world, client_for):
        in_three_days = (timezone.now() + timedelta(days=3)).astimezone(ZoneInfo("UTC")).weekday()
        later = {"timezone": "UTC", "windows": [{"days": [DAYS[in_three_days]], "start": "09:00", "end": "10:00"}]}
        services.create_share(actor=world.owner, grantee=world.alice, device=world.lock, level=Level.CONTROL,
                              schedule=later)
        services.create_share(actor=world.owner, grantee=world.bob, device=world.lock, level=Level.VIEW)
        rows = client_for(world.owner).get(tenant_url("device-access-list", world, device=world.lock.pk)).json()
        assert [(r["user"]["email"], r["level"], r["in_force"], r["schedule"]) for r in rows] == [
            (world.owner.email, "owner", True, None),
            (world.bob.email, "view", True, None),
            (world.alice.email, "control", False, later),
        ]

    def test_a_manager_outside_their_hours_still_oversees(self, world, client_for):
        """Managing follows the share's status (docs/sharing.md#weekly-schedules)."""
        in_three_days = (timezone.now() + timedelta(days=3)).astimezone(ZoneInfo("UTC")).weekday()
        hours = {"timezone": "UTC", "windows": [{"days": [DAYS[in_three_days]], "start": "09:00", "end": "10:00"}]}
        services.create_share(actor=world.owner, grantee=world.alice, device=world.lock, level=Level.MANAGE,
                              schedule=hours)
        alice = client_for(world.alice)
        assert self.access(alice, world).json()["level"] is None
        assert alice.get(tenant_url("device-access-list", world, device=world.lock.pk)).status_code == 200
        assert alice.get(tenant_url("device-audit", world, device=world.lock.pk)).status_code == 200
        device = alice.get(tenant_url("device-detail", world, pk=world.lock.pk)).json()
        assert device["level"] == "manage"  # the list shows what the share gives, whatever the hour


def test_the_next_tuesday_helper():
    tuesday = next_tuesday(9)
    assert tuesday.weekday() == 1 and tuesday > timezone.now() + timedelta(days=1)


class TestUnreadableStoredSchedule:
    """A stored zone that left the pinned tzdata (docs/sharing.md#a-stored-schedule-that-no-longer-reads)."""

    @pytest.fixture
    def broken(self, world):
        share = services.create_share(actor=world.owner, grantee=world.alice, device=world.lock, level=Level.CONTROL,
                                      schedule=TUESDAYS)
        raw = {**TUESDAYS, "timezone": "Mars/Olympus"}
        Share.objects.filter(pk=share.pk).update(schedule=raw)
        services.create_share(actor=world.owner, grantee=world.bob, device=world.lock, level=Level.VIEW)
        return share, raw

    def test_the_device_still_answers_and_the_grant_gives_nothing(self, world, client_for, broken, caplog):
        share, raw = broken
        owner = client_for(world.owner)
        rows = owner.get(tenant_url("device-access-list", world, device=world.lock.pk))
        assert rows.status_code == 200, rows.content
        assert [(r["user"]["email"], r["in_force"], r["schedule"]) for r in rows.json()] == [
            (world.owner.email, True, None), (world.bob.email, True, None), (world.alice.email, False, raw)]
        mine = client_for(world.alice).get(tenant_url("device-access", world, device=world.lock.pk))
        assert mine.status_code == 200 and (mine.json()["level"], mine.json()["next_change"]) == (None, None)
        assert owner.get(tenant_url("share-detail", world, pk=share.pk)).json()["schedule"] == raw
        logged = [r for r in caplog.records if r.levelname == "ERROR" and "Mars/Olympus" in r.getMessage()]
        assert len(logged) == 1

    def test_the_owner_replaces_the_hours(self, world, client_for, broken):
        share, _ = broken
        path = tenant_url("share-detail", world, pk=share.pk)
        response = client_for(world.owner).patch(path, {"schedule": TUESDAYS}, format="json")
        assert response.status_code == 200, response.content
        share.refresh_from_db()
        assert share.schedule == TUESDAYS

    def test_an_edit_of_something_else_keeps_the_stored_hours_as_they_were(self, world, client_for, broken):
        share, raw = broken
        response = client_for(world.owner).patch(tenant_url("share-detail", world, pk=share.pk), {"level": "view"},
                                                 format="json")
        assert response.status_code == 200, response.content
        share.refresh_from_db()
        assert (share.level, share.schedule) == (Level.VIEW, raw)

    def test_the_owner_revokes_it(self, world, client_for, broken):
        share, _ = broken
        response = client_for(world.owner).post(tenant_url("share-revoke", world, pk=share.pk))
        assert response.status_code == 200, response.content
        share.refresh_from_db()
        assert share.revoked_at is not None
