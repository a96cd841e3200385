"""devices/schedules.py: the JSON form and its checks, the console's text
form, `within`, `intersection` and `reached_between`
(docs/sharing.md#weekly-schedules)."""
from collections import Counter
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devices import schedules
from devices.errors import DomainError, ErrorCode
from lambda_bridge.schedule import Schedule, Window

DAY = 24 * 60
MON, TUE, WED, THU, FRI, SAT, SUN = range(7)


def form(*windows, zone="Europe/Brussels"):
    return {"timezone": zone, "windows": [{"days": days, "start": start, "end": end} for days, start, end in windows]}


def minutes(day, hh, mm=0):
    return day * DAY + hh * 60 + mm


class TestJsonForm:
    def test_the_issues_example_reads_and_writes_back(self):
        data = form((["tue"], "09:00", "12:00"))
        schedule = schedules.parse(data)
        assert schedule == Schedule("Europe/Brussels", (Window(frozenset({TUE}), 9 * 60, 12 * 60),))
        assert schedules.to_json(schedule) == data

    def test_none_is_any_hour(self):
        assert schedules.parse(None) is None and schedules.to_json(None) is None

    def test_days_come_back_in_week_order(self):
        data = schedules.to_json(schedules.parse(form((["sun", "mon", "wed"], "08:00", "09:30"))))
        assert data["windows"][0]["days"] == ["mon", "wed", "sun"]

    def test_windows_in_any_order_make_one_schedule_stored_alike(self):
        windows = [(["thu"], "14:00", "16:00"), (["tue", "fri"], "09:00", "12:00"), (["tue"], "07:00", "08:00"),
                   (["tue"], "07:00", "07:30")]
        orders = [windows, windows[::-1], windows[1:] + windows[:1]]
        parsed = [schedules.parse(form(*order)) for order in orders]
        assert parsed[0] == parsed[1] == parsed[2]
        stored = schedules.to_json(parsed[0])["windows"]
        # Stored by first day, then hours: the order to_text shows them in.
        assert [(w["days"][0], w["start"], w["end"]) for w in stored] == [
            ("tue", "07:00", "07:30"), ("tue", "07:00", "08:00"), ("tue", "09:00", "12:00"), ("thu", "14:00", "16:00")]

    def test_a_whole_day_and_an_end_at_midnight(self):
        whole = schedules.parse(form((["sat"], "00:00", "24:00")))
        assert schedules.week_minutes(whole) == frozenset(range(minutes(SAT, 0), minutes(SUN, 0)))
        # 00:00 as an end is the coming midnight: the same as 24:00.
        evening = schedules.parse(form((["fri"], "22:00", "00:00")))
        assert schedules.to_json(evening) == form((["fri"], "22:00", "24:00"))

    def test_a_window_crossing_sunday_midnight_wraps_into_monday(self):
        night = schedules.parse(form((["sun"], "22:00", "02:00")))
        assert schedules.week_minutes(night) == (frozenset(range(minutes(SUN, 22), minutes(SUN, 24)))
                                                 | frozenset(range(minutes(MON, 0), minutes(MON, 2))))

    @pytest.mark.parametrize("data, code", [
        ("tue 09:00-12:00", ErrorCode.SCHEDULE_INVALID),  # a string instead of an object
        (["tue"], ErrorCode.SCHEDULE_INVALID),
        ({"timezone": "Europe/Brussels"}, ErrorCode.SCHEDULE_INVALID),
        ({**form((["tue"], "09:00", "12:00")), "extra": 1}, ErrorCode.SCHEDULE_INVALID),
        (form((["tue"], "09:00", "12:00"), zone="Mars/Olympus"), ErrorCode.TIME_ZONE_UNKNOWN),
        (form((["tue"], "09:00", "12:00"), zone="localtime"), ErrorCode.TIME_ZONE_UNKNOWN),
        (form((["tue"], "09:00", "12:00"), zone=7), ErrorCode.TIME_ZONE_UNKNOWN),
        ({"timezone": "UTC", "windows": []}, ErrorCode.SCHEDULE_INVALID),
        ({"timezone": "UTC", "windows": "tue"}, ErrorCode.SCHEDULE_INVALID),
        (form(*[(["mon"], f"{h:02d}:00", f"{h:02d}:30") for h in range(15)]), ErrorCode.SCHEDULE_INVALID),
        (form(([], "09:00", "12:00")), ErrorCode.SCHEDULE_INVALID),
        (form((["tuesday"], "09:00", "12:00")), ErrorCode.SCHEDULE_INVALID),
        (form((["tue", "tue"], "09:00", "12:00")), ErrorCode.SCHEDULE_INVALID),
        (form(("tue", "09:00", "12:00")), ErrorCode.SCHEDULE_INVALID),
        (form((["tue"], "25:00", "26:00")), ErrorCode.SCHEDULE_INVALID),
        (form((["tue"], "09:00", "24:30")), ErrorCode.SCHEDULE_INVALID),
        (form((["tue"], "24:00", "02:00")), ErrorCode.SCHEDULE_INVALID),
        (form((["tue"], "09:60", "12:00")), ErrorCode.SCHEDULE_INVALID),
        (form((["tue"], "9:00", "12:00")), ErrorCode.SCHEDULE_INVALID),
        (form((["tue"], "0\u00b2:00", "12:00")), ErrorCode.SCHEDULE_INVALID),  # '²' passes str.isdigit()
        (form((["tue"], "\u0660\u0669:00", "12:00")), ErrorCode.SCHEDULE_INVALID),  # Arabic-Indic digits
        (form((["tue"], "EST5EDT", "12:00"), zone="EST5EDT"), ErrorCode.TIME_ZONE_UNKNOWN),
        (form((["tue"], 900, "12:00")), ErrorCode.SCHEDULE_INVALID),
        (form((["tue"], "09:00", "09:00")), ErrorCode.SCHEDULE_INVALID),
        (form((["tue"], "00:00", "00:00")), ErrorCode.SCHEDULE_INVALID),
        ({"timezone": "UTC", "windows": [{"days": ["tue"], "start": "09:00"}]}, ErrorCode.SCHEDULE_INVALID),
    ])
    def test_bad_input_is_refused_with_a_code_on_the_schedule_field(self, data, code):
        with pytest.raises(DomainError) as caught:
            schedules.parse(data)
        assert caught.value.code is code and caught.value.field == "schedule"

    def test_fourteen_windows_are_enough(self):
        data = form(*[(["mon"], f"{h:02d}:00", f"{h:02d}:30") for h in range(14)])
        assert len(schedules.parse(data).windows) == schedules.MAX_WINDOWS == 14


class TestWithin:
    def test_inside_the_same_zone(self):
        outer = schedules.parse(form((["mon", "tue", "wed", "thu", "fri"], "08:00", "18:00")))
        assert schedules.within(schedules.parse(form((["tue"], "09:00", "12:00"))), outer)
        assert not schedules.within(schedules.parse(form((["tue"], "07:00", "12:00"))), outer)
        assert not schedules.within(schedules.parse(form((["sat"], "09:00", "12:00"))), outer)

    def test_a_crossing_window_inside_two_days(self):
        outer = schedules.parse(form((["fri"], "20:00", "24:00"), (["sat"], "00:00", "03:00")))
        assert schedules.within(schedules.parse(form((["fri"], "22:00", "02:00"))), outer)

    def test_any_hour_and_other_zones(self):
        tuesday = schedules.parse(form((["tue"], "09:00", "12:00")))
        assert schedules.within(tuesday, None) and schedules.within(None, None)
        assert not schedules.within(None, tuesday)  # any hour is wider than Tuesday mornings
        assert not schedules.within(schedules.parse(form((["tue"], "09:00", "12:00"), zone="Europe/Paris")), tuesday)


# One zone: intersection is about minutes of the week, and answers None across zones.
ZONE = "Europe/London"
windows = st.builds(lambda days, start, length: Window(frozenset(days), start, (start + length) % DAY or DAY),
                    st.sets(st.integers(0, 6), min_size=1, max_size=7), st.integers(0, DAY - 1),
                    st.integers(1, DAY - 1))
any_schedule = st.builds(lambda ws: Schedule(ZONE, tuple(ws)), st.lists(windows, min_size=1, max_size=4))


@settings(max_examples=40, deadline=None, derandomize=True)
@given(schedule=any_schedule)
def test_week_minutes_are_the_minutes_a_window_covers(schedule):
    assert schedules.week_minutes(schedule) == {
        m for m in range(7 * DAY) if any(w.covers(m // DAY, m % DAY) for w in schedule.windows)}


class TestIntersection:
    @settings(max_examples=150, deadline=None, derandomize=True)
    @given(a=any_schedule, b=any_schedule)
    def test_it_covers_exactly_the_minutes_both_cover(self, a, b):
        common = schedules.week_minutes(a) & schedules.week_minutes(b)
        result = schedules.intersection(a, b)
        if not common:
            assert result is None
            return
        assert result.zone == ZONE
        assert schedules.week_minutes(result) == common
        assert schedules.within(result, a) and schedules.within(result, b)
        if len(result.windows) <= schedules.MAX_WINDOWS:
            # What the clamp stores reads back as the same schedule.
            assert schedules.parse(schedules.to_json(result)) == result

    def test_two_night_shifts_meet_in_one_crossing_window(self):
        weeknights = schedules.parse(form((["mon", "tue", "wed", "thu", "fri"], "22:00", "06:00")))
        late = schedules.parse(form((["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "23:00", "05:00")))
        assert schedules.to_json(schedules.intersection(weeknights, late)) == form(
            (["mon", "tue", "wed", "thu", "fri"], "23:00", "05:00"))

    def test_equal_hours_on_several_days_make_one_window(self):
        office = schedules.parse(form((["mon", "tue", "wed", "thu", "fri"], "08:00", "18:00")))
        mornings = schedules.parse(form((["tue", "thu", "sat"], "06:00", "12:00")))
        assert schedules.to_json(schedules.intersection(office, mornings)) == form((["tue", "thu"], "08:00", "12:00"))

    def test_a_whole_week(self):
        always = schedules.parse(form((["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "00:00", "24:00")))
        assert schedules.intersection(always, always) == always

    def test_nothing_in_common_or_two_zones_is_none(self):
        tuesday = schedules.parse(form((["tue"], "09:00", "12:00")))
        assert schedules.intersection(tuesday, schedules.parse(form((["tue"], "12:00", "13:00")))) is None
        assert schedules.intersection(tuesday, schedules.parse(form((["tue"], "09:00", "12:00"),
                                                                    zone="Europe/Paris"))) is None


class TestUnreadableStoredSchedule:
    """A stored zone gone from tzdata: never in force, shown as unreadable, written back as stored."""

    RAW = form((["tue"], "09:00", "12:00"), zone="Mars/Olympus")

    def test_never_in_force_and_written_back_as_stored(self):
        class Grant:
            pk, schedule = 7, self.RAW

        schedule = schedules.of(Grant())
        at = int(datetime(2027, 3, 30, 8, tzinfo=UTC).timestamp())  # a Tuesday morning anywhere near
        assert not schedule.active(at) and schedule.next_change(at) is None
        assert not schedules.reached_between(schedule, datetime(2027, 3, 29, tzinfo=UTC),
                                             datetime(2027, 4, 30, tzinfo=UTC))
        assert schedules.to_json(schedule) == self.RAW
        assert schedule != schedules.parse(form((["tue"], "09:00", "12:00"), zone="UTC"))

    def test_shown_as_unreadable_with_its_zone(self):
        assert schedules.summary(self.RAW) == schedules.to_text(self.RAW) == "unreadable (Mars/Olympus)"


class TestTextForm:
    def test_the_consoles_examples(self):
        data = schedules.parse_text("tue,thu 09:00-12:00\nmon-fri 22:00-06:00", zone="Europe/Brussels")
        # Stored and shown in the canonical order: by first day, then hours.
        assert data == form((["mon", "tue", "wed", "thu", "fri"], "22:00", "06:00"), (["tue", "thu"], "09:00", "12:00"))
        assert schedules.to_text(data) == "mon-fri 22:00-06:00\ntue,thu 09:00-12:00"

    def test_lenient_spelling(self):
        data = schedules.parse_text("  Sat - Mon  8:00 – 9:30 \r\n\r\n tue, thu 10:00-11:00", zone="UTC")
        assert data == form((["mon", "sat", "sun"], "08:00", "09:30"), (["tue", "thu"], "10:00", "11:00"), zone="UTC")

    def test_no_line_is_no_schedule(self):
        assert schedules.parse_text(" \n ", zone="Europe/Brussels") is None
        assert schedules.parse_text("", zone="") is None
        assert schedules.to_text(None) == ""

    def test_days_read_back_as_ranges_of_three_or_more(self):
        data = form((["mon", "tue", "wed", "fri", "sat"], "09:00", "10:00"))
        assert schedules.to_text(data) == "mon-wed,fri,sat 09:00-10:00"

    @pytest.mark.parametrize("text, zone, code, words", [
        ("tue 09:00-12:00", "", ErrorCode.TIME_ZONE_UNKNOWN, "time zone"),
        ("tue 09:00-12:00", "Nowhere/City", ErrorCode.TIME_ZONE_UNKNOWN, "IANA"),
        ("tue 09:00-12:00\ntuesday 10:00-11:00", "UTC", ErrorCode.SCHEDULE_INVALID, "Line 2 (tuesday"),
        ("tue 09:00", "UTC", ErrorCode.SCHEDULE_INVALID, "Line 1"),
        ("09:00-12:00", "UTC", ErrorCode.SCHEDULE_INVALID, "days then hours"),
        ("tue 25:00-26:00", "UTC", ErrorCode.SCHEDULE_INVALID, "between 00:00 and 23:59"),
        ("tue 9-12", "UTC", ErrorCode.SCHEDULE_INVALID, "HH:MM"),
        ("\n".join(f"mon {h:02d}:00-{h:02d}:30" for h in range(15)), "UTC", ErrorCode.SCHEDULE_INVALID, "1 to 14"),
    ])
    def test_refusals_name_the_line(self, text, zone, code, words):
        with pytest.raises(DomainError) as caught:
            schedules.parse_text(text, zone=zone)
        assert caught.value.code is code and caught.value.field == "schedule"
        assert words in caught.value.messages[0]

    @settings(max_examples=100, deadline=None, derandomize=True)
    @given(schedule=st.builds(lambda ws: Schedule(ZONE, tuple(ws)), st.lists(windows, min_size=1, max_size=14)))
    def test_text_and_json_forms_agree(self, schedule):
        data = schedules.to_json(schedule)
        read_back = schedules.parse(schedules.parse_text(schedules.to_text(data), zone=ZONE))
        assert Counter(read_back.windows) == Counter(schedule.windows)

    def test_summary(self):
        data = form((["tue"], "09:00", "12:00"), (["sat", "sun"], "10:00", "11:00"))
        assert schedules.summary(data) == "tue 09:00-12:00; sat,sun 10:00-11:00 (Europe/Brussels)"
        assert schedules.summary(None) == ""


def utc(*args):
    return datetime(*args, tzinfo=UTC)


class TestReachedBetween:
    tuesday_mornings = schedules.parse(form((["tue"], "09:00", "12:00"), zone="UTC"))

    def test_a_span_with_or_without_the_hours(self):
        # 2027-03-30 is a Tuesday.
        assert schedules.reached_between(self.tuesday_mornings, utc(2027, 3, 30, 11, 59), utc(2027, 3, 30, 13))
        assert not schedules.reached_between(self.tuesday_mornings, utc(2027, 3, 30, 12), utc(2027, 4, 6, 9))
        assert schedules.reached_between(self.tuesday_mornings, utc(2027, 3, 30, 12), utc(2027, 4, 6, 9, 0, 1))
        assert schedules.reached_between(self.tuesday_mornings, utc(2027, 3, 31), None)
        assert schedules.reached_between(None, utc(2027, 3, 31), utc(2027, 3, 31, 1))

    def test_daylight_saving_days_and_a_search_past_the_horizon(self):
        sundays = schedules.parse(form((["sun"], "01:00", "02:00"), zone="Europe/London"))
        # London skips 01:00-02:00 on 28 March 2027: that Sunday has none of the hours...
        day_of_the_gap = utc(2027, 3, 28), utc(2027, 3, 28, 23)
        assert not schedules.reached_between(sundays, *day_of_the_gap)
        # ... and from the Monday before, the next Sunday's hour is the first (00:00 UTC, BST).
        assert not schedules.reached_between(sundays, utc(2027, 3, 22), utc(2027, 4, 4))
        assert schedules.reached_between(sundays, utc(2027, 3, 22), utc(2027, 4, 4, 0, 0, 1))
        # On 31 October the hour happens twice, 00:00-02:00 UTC.
        assert schedules.reached_between(sundays, utc(2027, 10, 31, 1, 30), utc(2027, 10, 31, 1, 31))
