"""No over-grant, by behaviour: random tenants, people, devices, groups and
shares in PostgreSQL; the snapshots the pipeline computes; the policies the
handler answers with; every action on every resource, judged by the IoT
policy evaluator, against what Django's `effective_access` says.

Each principal may also carry a token cut-off before, at or after its
token's issue time (docs/snapshots.md#the-token-cut-off): a token issued
before it is refused with `token_revoked`, any other is judged as above.

The expectation (`tests/lambda_bridge/spec.py`) is the docs/topics-and-policies.md table written
out independently of `lambda_bridge.policy`.
"""
import time
from dataclasses import replace
from datetime import timedelta

from django.db import transaction
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from authz.snapshots.compiler import Principal, compile_snapshots
from devices.models import Level, Membership, Share
from devices.selectors import effective_access
from lambda_bridge import snapshot
from lambda_bridge.evaluator import RESOURCE_TYPES, Connection
from tests.factories import DeviceFactory, DeviceGroupFactory, DeviceTypeFactory, TenantFactory, member
from tests.lambda_bridge.spec import expected, expected_of_device, probes
from tests.support.lambda_env import ACCOUNT, REGION

# Thing names that are prefixes of one another, or carry the ':' that a loose
# ARN wildcard could swallow.
THING_NAMES = ["d-a", "d-ab", "d-a:b", "a", "a:topic", "x_1", "X-1", "d-aa", "topic", "b:c:d"]
# Names no thing may have, used only as probes.
HOSTILE = ["+", "#", "*", "?", "$aws", "a/b", "d-a/out", "d-*", "d-a?", ""]
WINDOWS = {  # offsets in days from now: (starts, expires)
    "always": (None, None),
    "ended": (-3, -1),
    "later": (1, 3),
    "now, ends later": (None, 2),
    "started, ends later": (-1, 2),
}

ACTIONS = tuple(RESOURCE_TYPES)  # every IoT data action the evaluator knows a resource type for
CUTOFFS = (None, -60, 0, 1, 60)  # seconds after the token's iat: before it, at it, after it


@st.composite
def worlds(draw):
    names = draw(st.permutations(THING_NAMES))
    home_count = draw(st.integers(1, 6))
    home = [{"thing": name, "owner": draw(st.integers(0, 3)), "group": draw(st.sampled_from([None, 0, 1]))}
            for name in names[:home_count]]
    away = [{"thing": name, "owner": 0, "group": None} for name in names[home_count:home_count + 2]]
    shares = draw(st.dictionaries(
        keys=st.tuples(st.sampled_from(["device", "group"]), st.integers(0, 5), st.integers(0, 3)),
        values=st.tuples(st.sampled_from([Level.VIEW, Level.CONTROL, Level.MANAGE]),
                         st.sampled_from(sorted(WINDOWS)), st.booleans()),
        max_size=8,
    ))
    scope = draw(st.lists(st.integers(0, 5), max_size=3))  # a scoped token for the first person
    # Per principal (people, outsider, devices in order): no cut-off, or one
    # this many seconds after the token's iat.
    cutoffs = draw(st.lists(st.sampled_from(CUTOFFS), min_size=12, max_size=12))
    return {"home": home, "away": away, "shares": shares, "scope": scope, "cutoffs": cutoffs}


class Rollback(Exception):
    pass


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(world=worlds())
def test_policies_grant_exactly_what_django_grants(lam, db, world):
    try:
        with transaction.atomic():
            _check(lam, world)
            raise Rollback  # each example starts from an empty database
    except Rollback:
        pass


def _check(lam, world):
    now = timezone.now()
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
    live = set()
    for (target, index, grantee), (level, window, revoked) in world["shares"].items():
        device = devices[index % len(devices)] if target == "device" else None
        group = groups[index % 2] if target == "group" else None
        if not revoked and (device, group, grantee) in live:
            continue  # one live share per target and grantee
        live.add((device, group, grantee))
        starts, expires = (None if days is None else now + timedelta(days=days) for days in WINDOWS[window])
        Share.objects.create(
            tenant=home, grantee=people[grantee], created_by=admin, level=level, starts_at=starts,
            expires_at=expires, revoked_at=now if revoked else None, device=device, group=group,
        )

    principals = [Principal(home.pk, snapshot.USER, str(p.pk), time.time_ns()) for p in people]
    principals.append(Principal(away.pk, snapshot.USER, str(outsider.pk), time.time_ns()))
    principals += [Principal(home.pk, snapshot.DEVICE, d.thing_name, time.time_ns()) for d in devices]
    # The tokens' issue time: a past second, so that a cut-off after it is still in the past.
    issued = int(time.time()) - 120
    revoked = set()
    compiled = compile_snapshots(principals, now=now)
    for principal, offset in zip(principals, world["cutoffs"], strict=False):
        snap = compiled[(principal.tenant_id, principal.kind, principal.principal)]
        if offset is not None:
            # The compiler does not set cut-offs yet; the writer will, in format 3.
            snap = replace(snap, cutoff=issued + offset)
            if offset > 0:
                revoked.add((principal.tenant_id, principal.kind, principal.principal))
        lam.put_item(snapshot.to_item(snap, fmt=3))

    every_thing = [d.thing_name for d in devices + foreign] + HOSTILE
    app_ids = {p: f"u{home.pk if p != outsider else away.pk}.{p.pk}.app" for p in people + [outsider]}
    client_ids = [*app_ids.values(), f"u{away.pk}.{people[0].pk}.app", *HOSTILE, *THING_NAMES]
    judge = Judge(lam, client_ids, every_thing, issued=issued, revoked=revoked)

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
        judge.compare(device, expect=lambda action, name, cid: expected_of_device(action, name, cid),
                      sub=f"device:{device.thing_name}", tid=home.pk, cid=device.thing_name)


class Judge:
    """Asks the handler for one principal's policies and compares every
    action on every probe with what the rules expect."""

    def __init__(self, lam, client_ids, things, *, issued, revoked):
        self.lam, self.issued, self.revoked = lam, issued, revoked
        topics = probes(things)
        self.names = {"client": client_ids, "thing": things, "topic": topics, "topicfilter": topics}

    def compare(self, who, *, expect, cid, **claims):
        token = self.lam.token(cid=cid, iat=self.issued, nbf=self.issued, **claims)
        response = self.lam.invoke(self.lam.event("test_invoke", token))
        kind, _, principal = claims["sub"].partition(":")
        if (claims["tid"], snapshot.USER if kind == "user" else snapshot.DEVICE, principal) in self.revoked:
            assert (response["isAuthenticated"], self.lam.last_log["reason"]) == (False, "token_revoked"), who
            return
        assert response["isAuthenticated"], (self.lam.last_log["reason"], self.lam.last_log["detail"])
        connection = Connection(response["policyDocuments"], REGION, ACCOUNT, cid)
        differences = [
            (action, name, allowed)
            for action in ACTIONS
            for name in self.names[RESOURCE_TYPES[action]]
            if (allowed := connection.can(action, name)) != expect(action, name, cid)
        ]
        assert differences == [], (who, claims)


def test_the_expectation_itself_is_not_vacuous():
    """The oracle must say yes to what the rules allow, or the comparison
    above would pass for a policy that denies everything."""
    levels = {"d-a": Level.VIEW, "d-b": Level.CONTROL}
    assert expected("iot:Subscribe", "dev/d-a/out/#", levels, "c")
    assert expected("iot:Publish", "$aws/things/d-a/shadow/name/s/get", levels, "c")
    assert not expected("iot:Publish", "dev/d-a/in/x", levels, "c")
    assert expected("iot:Publish", "dev/d-b/in/x", levels, "c")
    assert expected("iot:Connect", "c", levels, "c") and not expected("iot:Connect", "d", levels, "c")
