"""Many clients writing shares of one device at once, through the API, on PostgreSQL.

Each thread is one client with its own database connection. They create
shares, re-share from their manage shares, change levels, revoke (with the
cascade) and leave, all on the same device: SHARE_RACE_REQUESTS requests
each (50: 1,000 in all), started together. Afterwards: no 5xx, the database
invariants hold, and every principal's item in DynamoDB (pushed inline by the
eager outbox) is what the compiler makes of the final state.

A fixed number of requests, not a duration: what can deadlock or corrupt is
a pair of writes interleaving, and every request meets 19 others on the same
rows, so the count of contested writes is the measure; a duration buys a
different amount of it on every machine (1,000 requests take about 20 s on
a shared 2-CPU machine, where 60 s gave about 3,000). SHARE_RACE_SECONDS=60
runs the original 60-s race (docs/sharing.md#concurrent-writers).
"""
import os
import random
import threading
import time
from collections import Counter

import pytest
from django.core.signals import got_request_exception
from django.db import connection, connections
from django.utils import timezone
from rest_framework.test import APIClient

from authz.models import PrincipalSync
from authz.snapshots.compiler import Principal, compile_snapshots
from devices.models import Share
from tests.factories import member
from tests.support.api import tenant_url
from tests.support.world import World

REQUESTS = int(os.environ.get("SHARE_RACE_REQUESTS", "50"))  # per client
SECONDS = float(os.environ.get("SHARE_RACE_SECONDS", "0"))  # set: race for that long instead
CLIENTS = 20
LEVELS = ["view", "control", "manage"]

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def postgresql_only():
    # The fault is PostgreSQL's (row locks and deferred composite foreign keys); SQLite
    # serialises every writer on the whole database and has neither.
    if connection.vendor != "postgresql":
        pytest.skip("share-write locking is a PostgreSQL matter; DATABASE_URL is not PostgreSQL")


@pytest.fixture
def unthrottled(settings):
    rates = {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "shares": "1000000/minute"}
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": rates}


class Race:
    def __init__(self, world: World, people):
        self.world, self.people = world, people
        self.device = world.lock
        self.statuses: Counter = Counter()
        self.errors: list[str] = []
        self.lock = threading.Lock()
        self.start = threading.Barrier(CLIENTS)  # the clients start writing together

    def url(self, name, **kwargs):
        return tenant_url(name, self.world, **kwargs)

    def live(self, **filters):
        return list(Share.objects.filter(device=self.device, revoked_at__isnull=True, **filters)
                    .values("pk", "grantee_id", "level", "can_reshare"))

    def step(self, client: APIClient, me, rng: random.Random):
        """One request a client of `me` might plausibly make now."""
        others = [p for p in self.people if p.pk != me.pk]
        if me in (self.world.owner, self.world.admin):
            choice = rng.choice(["share", "share", "update", "revoke"])
            live = self.live()
            if choice == "share" or not live:
                level = rng.choice(LEVELS)
                body = {"grantee": rng.choice(others).email, "level": level,
                        "can_reshare": level == "manage" and rng.random() < 0.8}
                return client.post(self.url("device-shares", device=self.device.pk), body, format="json")
            share = rng.choice(live)
            if choice == "update":
                level = rng.choice(LEVELS)
                body = {"level": level, "can_reshare": level == "manage" and rng.random() < 0.7}
                return client.patch(self.url("share-detail", pk=share["pk"]), body, format="json")
            return client.post(self.url("share-revoke", pk=share["pk"]))
        mine = self.live(grantee_id=me.pk)
        made = self.live(parent__grantee_id=me.pk)
        if not mine:  # nothing to act on: a member's app just looks
            return client.get(self.url("share-list"))
        choice = rng.choice(["reshare", "reshare", "update", "revoke", "leave"])
        if choice == "leave":
            return client.post(self.url("share-revoke", pk=mine[0]["pk"]))
        if choice == "update" and made:
            return client.patch(self.url("share-detail", pk=rng.choice(made)["pk"]),
                                {"level": rng.choice(LEVELS[:2])}, format="json")
        if choice == "revoke" and made:
            return client.post(self.url("share-revoke", pk=rng.choice(made)["pk"]))
        level = rng.choice(LEVELS[:mine[0]["level"] // 10])  # at most their own level
        body = {"grantee": rng.choice(others).email, "level": level}
        return client.post(self.url("device-shares", device=self.device.pk), body, format="json")

    def client_loop(self, me, seed: int):
        rng = random.Random(seed)
        client = APIClient(raise_request_exception=False)
        client.force_authenticate(me)
        try:
            self.start.wait(60)
            deadline, made = time.monotonic() + SECONDS, 0
            while (time.monotonic() < deadline) if SECONDS else (made < REQUESTS):
                made += 1
                response = self.step(client, me, rng)
                with self.lock:
                    self.statuses[response.status_code] += 1
                    if response.status_code >= 500:
                        self.errors.append(f"{response.status_code} {response.content[:100]!r}")
        except Exception as exc:  # noqa: BLE001  (a crash in the test's own thread must fail it, not vanish)
            with self.lock:
                self.errors.append(f"client crashed: {exc!r}")
        finally:
            connections.close_all()


def test_concurrent_share_writes_on_one_device_never_deadlock_or_corrupt(
        postgresql_only, unthrottled, table, settings):
    world = World("race")
    people = [world.owner, world.admin, world.alice, world.bob, world.carol]
    people += [member(world.tenant, email=f"m{i}@race.test") for i in range(11)]
    race = Race(world, people)
    # Three clients each for the owner and the admin, one for each member.
    clients = [world.owner, world.admin] * 3 + people[2:]
    assert len(clients) == CLIENTS

    def crashed(sender, request=None, **kwargs):
        import sys
        with race.lock:
            race.errors.append(f"{request.method} {request.path}: {sys.exc_info()[1]!r}"[:300])

    got_request_exception.connect(crashed)
    threads = [threading.Thread(target=race.client_loop, args=(me, i)) for i, me in enumerate(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got_request_exception.disconnect(crashed)
    print(f"{f'{SECONDS:.0f} s' if SECONDS else f'{REQUESTS} requests each'}, {CLIENTS} clients: "
          f"responses by status {dict(race.statuses)}")

    assert race.errors == [], (race.statuses, race.errors[:5])
    made = sum(race.statuses.values())
    # The clients really did race: each made all its requests (racing for a time: more than one each).
    assert (made > CLIENTS) if SECONDS else (made == CLIENTS * REQUESTS), race.statuses
    assert any(200 <= s < 300 for s in race.statuses), race.statuses

    shares = Share.objects.filter(device=race.device)
    live = Counter(shares.filter(revoked_at__isnull=True).values_list("grantee_id", flat=True))
    assert [g for g, n in live.items() if n > 1] == []
    assert not shares.filter(revoked_at__isnull=True, parent__revoked_at__isnull=False).exists()

    assert_every_snapshot_matches_the_compiler(world.tenant, table)


def assert_every_snapshot_matches_the_compiler(tenant, table):
    rows = list(PrincipalSync.objects.filter(tenant=tenant))
    lagging = [r.key for r in rows if r.pushed_version < r.desired_version]
    assert lagging == []
    assert len(rows) > 2  # the grantees whose access changed
    wanted = [Principal(tenant.pk, r.kind, r.principal, r.desired_version) for r in rows]
    compiled = compile_snapshots(wanted, now=timezone.now())
    stored = table.snapshots()
    for r in rows:
        expect = compiled[(tenant.pk, r.kind, r.principal)]
        got = stored.get(r.key)
        assert got is not None, r.key
        assert (got.version, got.gone, set(got.entries)) == (expect.version, expect.gone, set(expect.entries)), r.key
