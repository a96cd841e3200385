"""No over-grant, by behaviour: random tenants, people, devices, groups and
shares in PostgreSQL; the snapshots the pipeline computes; the policies the
handler answers with; every action on every resource, judged by the IoT
policy evaluator, against what Django's `effective_access` says.

Every device is asked about twice: with its platform JWT at the signed
authorizer and with a compact token (lambda_bridge/compact.py) at the
unsigned one, which must get exactly the JWT's answer
(docs/authorizer.md#compact-device-tokens).

Each principal may also carry a token cut-off before, at or after its
token's issue time (docs/snapshots.md#the-token-cut-off): a token issued
before it is refused with `token_revoked`, any other is judged as above.

Shares may carry a weekly schedule (docs/sharing.md#weekly-schedules) in
zones with 1-hour and 30-minute daylight-saving shifts, with windows that
cross midnight or start and end inside the hour the clocks skip or repeat;
and the moment judged is drawn around 2027's clock changes in those zones
(and at ordinary times), seconds before, at and after the edges. Snapshots
are compiled and the handler's clock reads at that moment. A new answer
leaves out a grant that ends within the authorizer's margin
(docs/decisions/0007-exact-ends.md), whether by its expiry or at a window's
end, so the expectation does too: Django is asked about the grants left
once those that stop being in force within it are set aside.

The expectation (`tests/lambda_bridge/spec.py`) is the docs/topics-and-policies.md table written
out independently of `lambda_bridge.policy`.
"""
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.db import transaction
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from authz.snapshots.compiler import Principal, compile_snapshots
from devices import schedules
from devices.models import Level, Membership, Share
from devices.selectors import effective_access
from devices.share_status import ShareStatus, share_status
from lambda_bridge import snapshot
from lambda_bridge.evaluator import RESOURCE_TYPES, Connection
from tests.factories import DeviceFactory, DeviceGroupFactory, DeviceTypeFactory, TenantFactory, member
from tests.lambda_bridge.compact_support import event as compact_event
from tests.lambda_bridge.compact_support import keyring_item
from tests.lambda_bridge.spec import expected, expected_of_device, probes
from tests.support.lambda_env import ACCOUNT, REGION
from tests.support.schedules import weekly

# Thing names that are prefixes of one another, or carry the ':' that a loose
# ARN wildcard could swallow.
THING_NAMES = ["d-a", "d-ab", "d-a:b", "a", "a:topic", "x_1", "X-1", "d-aa", "topic", "b:c:d"]
# Names no thing may have, used only as probes.
HOSTILE = ["+", "#", "*", "?", "$aws", "a/b", "d-a/out", "d-*", "d-a?", ""]
DAY, SECOND = timedelta(days=1), timedelta(seconds=1)
WINDOWS = {  # (starts, expires) from now
    "always": (None, None),
    "ended": (-3 * DAY, -DAY),
    "later": (DAY, 3 * DAY),
    "now, ends later": (None, 2 * DAY),
    "started, ends later": (-DAY, 2 * DAY),
    "ends within the margin": (None, 5 * SECOND),
    "ends as the margin does": (None, 10 * SECOND),
}
LIVE_WINDOWS = {name for name, (starts, expires) in WINDOWS.items() if starts is None or starts < timedelta(0)
                if expires is None or expires > timedelta(0)}
# docs/decisions/0007-exact-ends.md: a grant ending within 10 s of a new
# answer is left out of it.
MARGIN_SECONDS = 10

SCHEDULE_ZONES = ["Europe/London", "America/New_York", "Australia/Lord_Howe", "UTC"]
# Every clock change of 2027 in those zones falls early on a Sunday, local
# time: windows about those hours start or end in the skipped or repeated
# hour, or across midnight; two are about ordinary hours.
SCHEDULE_WINDOWS = [
    ("sun", "00:30", "02:00"),
    ("sun", "01:00", "03:00"),
    ("sun", "01:30", "02:30"),
    ("sun", "02:30", "03:30"),
    ("sat sun", "02:00", "02:30"),
    ("sat", "22:00", "02:00"),
    ("sat", "23:00", "01:30"),
    ("mon tue wed thu fri", "09:00", "17:30"),
    ("tue", "12:00", "24:00"),
]
# 2027's clock changes in SCHEDULE_ZONES, and ordinary moments; each with
# the zone most shares of a world judged then keep their hours in.
CLOCK_CHANGES = [
    ("America/New_York", datetime(2027, 3, 14, 7, 0, tzinfo=UTC)),     # 02:00 EST becomes 03:00 EDT
    ("Europe/London", datetime(2027, 3, 28, 1, 0, tzinfo=UTC)),        # 01:00 GMT becomes 02:00 BST
    ("Australia/Lord_Howe", datetime(2027, 4, 3, 15, 0, tzinfo=UTC)),  # 02:00 (+11) becomes 01:30 (+10:30)
    ("Australia/Lord_Howe", datetime(2027, 10, 2, 15, 30, tzinfo=UTC)),  # 02:00 (+10:30) becomes 02:30 (+11)
    ("Europe/London", datetime(2027, 10, 31, 1, 0, tzinfo=UTC)),       # 02:00 BST becomes 01:00 GMT
    ("America/New_York", datetime(2027, 11, 7, 6, 0, tzinfo=UTC)),     # 02:00 EDT becomes 01:00 EST
]
ORDINARY = [("UTC", datetime(2027, 6, 13, 1, 0, tzinfo=UTC)), ("UTC", datetime(2027, 1, 12, 17, 30, tzinfo=UTC))]
# Seconds from a window's edge: before the margin, inside it (twice as likely), at the edge, after it.
NEAR_AN_EDGE = (-11, -10, -9, -5, -1, 0, 1, 30, -9, -5, -1)

ACTIONS = tuple(RESOURCE_TYPES)  # every IoT data action the evaluator knows a resource type for
CUTOFFS = (None, -60, 0, 1, 60)  # seconds after the token's iat: before it, at it, after it


def schedules_in(zone: str):
    """None (a third of the time), or a schedule mostly in `zone`."""
    scheduled = st.builds(lambda zone, windows: weekly(zone, *windows),
                          st.sampled_from([zone, zone, zone, *SCHEDULE_ZONES]),
                          st.lists(st.sampled_from(SCHEDULE_WINDOWS), min_size=1, max_size=3, unique=True))
    return st.one_of(st.none(), scheduled, scheduled)


@st.composite
def worlds(draw):
    names = draw(st.permutations(THING_NAMES))
    home_count = draw(st.integers(1, 6))
    home = [{"thing": name, "owner": draw(st.integers(0, 3)), "group": draw(st.sampled_from([None, 0, 1]))}
            for name in names[:home_count]]
    away = [{"thing": name, "owner": 0, "group": None} for name in names[home_count:home_count + 2]]
    zone, change = draw(st.sampled_from(CLOCK_CHANGES + ORDINARY))
    shares = draw(st.dictionaries(
        keys=st.tuples(st.sampled_from(["device", "group"]), st.integers(0, 5), st.integers(0, 3)),
        values=st.tuples(st.sampled_from([Level.VIEW, Level.CONTROL, Level.MANAGE]),
                         st.sampled_from(sorted(WINDOWS)), st.booleans(), schedules_in(zone)),
        max_size=8,
    ))
    drawn = [schedule for _, window, revoked, schedule in shares.values()
             if schedule is not None and not revoked and window in LIVE_WINDOWS]
    if drawn and draw(st.integers(0, 3)):
        # About an edge of one of the windows (mostly an end), on the change's day in its zone.
        schedule = draw(st.sampled_from(drawn))
        window = draw(st.sampled_from(schedule["windows"]))
        edge = draw(st.sampled_from([window["end"], window["end"], window["start"]]))
        local = ZoneInfo(schedule["timezone"])
        wall = datetime.combine(change.astimezone(local).date(), datetime.min.time()) + timedelta(
            hours=int(edge[:2]), minutes=int(edge[3:]))
        base = wall.replace(tzinfo=local, fold=draw(st.integers(0, 1))).astimezone(UTC)
    else:
        # The early hours about the change, local time, where most windows' edges are.
        base = change + timedelta(minutes=30 * draw(st.integers(-3, 3)))
    moment = base + timedelta(seconds=draw(st.sampled_from(NEAR_AN_EDGE)))
    scope = draw(st.lists(st.integers(0, 5), max_size=3))  # a scoped token for the first person
    # Per principal (people, outsider, devices in order): no cut-off, or one
    # this many seconds after the token's iat.
    cutoffs = draw(st.lists(st.sampled_from(CUTOFFS), min_size=12, max_size=12))
    return {"home": home, "away": away, "shares": shares, "scope": scope, "cutoffs": cutoffs, "now": moment}


class Rollback(Exception):
    pass


def at_an_edge(zone: str, window: tuple[str, str, str], now: datetime, level=Level.CONTROL) -> dict:
    """A world of one scheduled share, judged at `now`: the owner's lamp,
    shared with the second person."""
    return {"home": [{"thing": "d-a", "owner": 0, "group": None}], "away": [], "scope": [], "cutoffs": [None] * 12,
            "shares": {("device", 0, 1): (level, "always", False, weekly(zone, window))}, "now": now}


# Worlds judged on every run: one scheduled share whose window closes (or
# not) within the margin, on days the clocks change.
EDGES = [
    # The clocks jump past the window's 01:30 end: it ends at 01:00 UTC.
    ("Europe/London", ("sun", "00:30", "01:30"), datetime(2027, 3, 28, 0, 59, 55, tzinfo=UTC), True),
    ("Europe/London", ("sun", "00:30", "01:30"), datetime(2027, 3, 28, 0, 59, 50, tzinfo=UTC), False),
    # 01:45 happens twice in Lord Howe on 4 April 2027: at 14:45 and 15:15 UTC.
    ("Australia/Lord_Howe", ("sun", "01:00", "01:45"), datetime(2027, 4, 3, 15, 14, 51, tzinfo=UTC), True),
    ("Australia/Lord_Howe", ("sun", "01:00", "01:45"), datetime(2027, 4, 3, 15, 0, 0, tzinfo=UTC), False),
    # Across midnight, ending in New York's repeated hour (the first 01:30 is 05:30 UTC).
    ("America/New_York", ("sat", "23:00", "01:30"), datetime(2027, 11, 7, 5, 29, 59, tzinfo=UTC), True),
]


def edge_examples(test):
    for zone, window, now, _ in EDGES:
        test = example(world=at_an_edge(zone, window, now))(test)
    return test


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(world=worlds())
@edge_examples
def test_policies_grant_exactly_what_django_grants(lam, db, compact_keys, world):
    lam.put_item(keyring_item(lam, compact_keys))
    try:
        with transaction.atomic():
            _check(lam, world, compact_keys["a"])
            raise Rollback  # each example starts from an empty database
    except Rollback:
        pass


def _check(lam, world, compact_key):
    now = world["now"]
    at = int(now.timestamp())
    lam.handler.authorizer.clock = lambda: at
    home, away = TenantFactory(), TenantFactory()
    people = [member(home) for _ in range(4)]
    admin = member(home, Membership.Role.ADMIN)  # creates the shares, never receives one
    outsider = member(away)
    kind = DeviceTypeFactory(tenant=home)
    groups = [DeviceGroupFactory(tenant=home, owner=people[i]) for i in (0, 1)]
    devices = [
        DeviceFactory(tenant=home, owner=people[d["owner"]], device_type=kind, thing_name=d["thing"],
                      group=None if d["group"] is None else groups[d["group"]])
        for d in world["home"]
    ]
    foreign = [DeviceFactory(tenant=away, owner=outsider, thing_name=d["thing"]) for d in world["away"]]
    live, shares = set(), []
    for (target, index, grantee), (level, window, revoked, schedule) in world["shares"].items():
        device = devices[index % len(devices)] if target == "device" else None
        group = groups[index % 2] if target == "group" else None
        if not revoked and (device, group, grantee) in live:
            continue  # one live share per target and grantee
        live.add((device, group, grantee))
        starts, expires = (None if offset is None else now + offset for offset in WINDOWS[window])
        shares.append(Share.objects.create(
            tenant=home, grantee=people[grantee], created_by=admin, level=level, starts_at=starts,
            expires_at=expires, revoked_at=now if revoked else None, device=device, group=group,
            schedule=schedule,
        ))

    principals = [Principal(home.pk, snapshot.USER, str(p.pk), time.time_ns()) for p in people]
    principals.append(Principal(away.pk, snapshot.USER, str(outsider.pk), time.time_ns()))
    principals += [Principal(home.pk, snapshot.DEVICE, d.thing_name, time.time_ns()) for d in devices]
    # The tokens' issue time: a past second, so that a cut-off after it is still in the past.
    issued = at - 120
    revoked = set()
    compiled = compile_snapshots(principals, now=now)
    for principal, offset in zip(principals, world["cutoffs"], strict=False):
        snap = compiled[(principal.tenant_id, principal.kind, principal.principal)]
        if offset is not None:
            # The compiler does not set cut-offs yet; the writer will, in format 3.
            snap = replace(snap, cutoff=issued + offset)
            if offset > 0:
                revoked.add((principal.tenant_id, principal.kind, principal.principal))
        lam.put_item(snapshot.to_item(snap, fmt=4))

    every_thing = [d.thing_name for d in devices + foreign] + HOSTILE
    app_ids = {p: f"u{home.pk if p != outsider else away.pk}.{p.pk}.app" for p in people + [outsider]}
    client_ids = [*app_ids.values(), f"u{away.pk}.{people[0].pk}.app", *HOSTILE, *THING_NAMES]
    judge = Judge(lam, client_ids, every_thing, issued=issued, expires=at + 3600, revoked=revoked,
                  compact_key=compact_key)

    # The snapshots are written; now the expectation's world: without the
    # grants that stop being in force within the margin.
    ending = [s for s in shares if in_force(s, now) and not all(
        in_force(s, now + k * SECOND) for k in range(1, MARGIN_SECONDS))]
    Share.objects.filter(pk__in=[s.pk for s in ending]).update(revoked_at=now)
    for share in shares:
        if share.schedule is not None and share_status(share, now=now) == ShareStatus.LIVE:
            event("a live scheduled share " + ("ending within the margin" if share in ending
                                                else "in force" if in_force(share, now) else "out of its hours"))

    scope = [devices[i % len(devices)].thing_name for i in world["scope"]] if world["scope"] else None
    for person, tenant in [(p, home) for p in people] + [(outsider, away)]:
        levels = {}
        for device in devices if tenant == home else foreign:
            access = effective_access(user=person, device=device, now=now)
            if access is not None:
                levels[device.thing_name] = access.level
        judge.compare(person, expect=lambda action, name, cid, levels=levels: expected(action, name, levels, cid),
                      sub=f"user:{person.pk}", tid=tenant.pk, cid=app_ids[person])
        if person == people[0] and scope:
            scoped = {thing: level for thing, level in levels.items() if thing in scope}
            judge.compare(person, expect=lambda action, name, cid, scoped=scoped: expected(action, name, scoped, cid),
                          sub=f"user:{person.pk}", tid=tenant.pk, cid=app_ids[person], scope={"things": scope})
    for device in devices:
        signed = judge.compare(device, expect=lambda action, name, cid: expected_of_device(action, name, cid),
                               sub=f"device:{device.thing_name}", tid=home.pk, cid=device.thing_name)
        compact = judge.compare_compact(device, expect=lambda action, name, cid: expected_of_device(action, name, cid),
                                        thing=device.thing_name, tid=home.pk)
        assert compact == signed, device.thing_name  # the same documents and principal id, or the same refusal


def in_force(share: Share, moment: datetime) -> bool:
    """Django's word on one share: live at `moment`, and its schedule, if
    any, in force then."""
    schedule = schedules.of(share)
    return share_status(share, now=moment) == ShareStatus.LIVE and (
        schedule is None or schedule.active(int(moment.timestamp())))


class Judge:
    """Asks the handler for one principal's policies and compares every
    action on every probe with what the rules expect."""

    def __init__(self, lam, client_ids, things, *, issued, expires, revoked, compact_key):
        self.lam, self.issued, self.expires, self.revoked = lam, issued, expires, revoked
        self.compact_key = compact_key
        topics = probes(things)
        self.names = {"client": client_ids, "thing": things, "topic": topics, "topicfilter": topics}

    def compare(self, who, *, expect, cid, **claims) -> dict:
        """The handler's answer to `who`'s JWT at the signed authorizer, judged."""
        token = self.lam.token(cid=cid, iat=self.issued, nbf=self.issued, exp=self.expires, **claims)
        kind, _, principal = claims["sub"].partition(":")
        return self._judge(who, self.lam.event("test_invoke", token), expect=expect, cid=cid,
                           key=(claims["tid"], snapshot.USER if kind == "user" else snapshot.DEVICE, principal))

    def compare_compact(self, who, *, expect, thing, tid) -> dict:
        """The same for a device's compact token at the unsigned authorizer."""
        token = self.compact_key.token(thing, tenant=tid, issued_at=self.issued, expires=self.expires)
        return self._judge(who, compact_event("mqtt_password", token, client_id=thing), expect=expect, cid=thing,
                           key=(tid, snapshot.DEVICE, thing))

    def _judge(self, who, request: dict, *, expect, cid, key) -> dict:
        response = self.lam.invoke(request)
        if key in self.revoked:
            assert (response["isAuthenticated"], self.lam.last_log["reason"]) == (False, "token_revoked"), who
            return response
        assert response["isAuthenticated"], (self.lam.last_log["reason"], self.lam.last_log["detail"])
        connection = Connection(response["policyDocuments"], REGION, ACCOUNT, cid)
        differences = [
            (action, name, allowed)
            for action in ACTIONS
            for name in self.names[RESOURCE_TYPES[action]]
            if (allowed := connection.can(action, name)) != expect(action, name, cid)
        ]
        assert differences == [], (who, key)
        return response


def test_the_expectation_itself_is_not_vacuous():
    """The oracle must say yes to what the rules allow, or the comparison
    above would pass for a policy that denies everything."""
    levels = {"d-a": Level.VIEW, "d-b": Level.CONTROL}
    assert expected("iot:Subscribe", "dev/d-a/out/#", levels, "c")
    assert expected("iot:Publish", "$aws/things/d-a/shadow/name/s/get", levels, "c")
    assert not expected("iot:Publish", "dev/d-a/in/x", levels, "c")
    assert expected("iot:Publish", "dev/d-b/in/x", levels, "c")
    assert expected("iot:Connect", "c", levels, "c") and not expected("iot:Connect", "d", levels, "c")


@pytest.mark.parametrize("zone, change", CLOCK_CHANGES)
def test_the_moments_drawn_are_clock_changes(zone, change):
    """So that the moments judged really are about the clocks changing."""
    at = int(change.timestamp())
    assert datetime.fromtimestamp(at - 1, ZoneInfo(zone)).utcoffset() != datetime.fromtimestamp(
        at, ZoneInfo(zone)).utcoffset()


@pytest.mark.parametrize("zone, window, now, ending", EDGES)
def test_the_edge_examples_are_where_they_say(zone, window, now, ending):
    """In force at the moment judged, and closing within the margin or not."""
    schedule = schedules.parse(weekly(zone, window))
    at = int(now.timestamp())
    assert schedule.active(at)
    assert (not all(schedule.active(at + k) for k in range(1, MARGIN_SECONDS))) == ending
