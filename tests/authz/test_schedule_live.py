"""A weekly schedule as a live client sees it (docs/live-access.md#exact-ends):
a real Celery worker pushes to moto and cuts through local_iot's iot-data,
local_iot runs the real authorizer on that table, paho clients connect with
credentials from the API. The sharee is refused the device outside the
window, reaches it inside, and is dropped at the window's end.

The authorizer's clock is the test's: it reads the moments the test sets,
a few minutes ahead of now, around a two-minute window in Kathmandu (+05:45),
and the test sweeps at those moments, as beat would when they come. So no
step waits for time to pass, and each is judged at an exact second. The
broker keeps real time; nothing here lasts long enough to meet its refresh."""
import math
import time
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from authz.live import sweep
from authz.models import PrincipalSync
from authz.snapshots import outbox
from devices.models import Level, Tenant
from lambda_bridge.handler import build
from tests.factories import ShareFactory
from tests.support.lambda_env import lambda_env
from tests.support.live_access import Telemetry, live_platform
from tests.support.processes import test_database_url, wait_until
from tests.support.schedules import weekly

pytestmark = pytest.mark.django_db(transaction=True)

ADMINISTRATIVE_ACTION = 0x98  # MQTT 5's DISCONNECT reason for a connection ended by the server's operator
NOT_AUTHORIZED = 0x87  # a SUBACK's refusal
ZONE = "Asia/Kathmandu"


class SetClock:
    """The authorizer's clock, reading the epoch second last set."""

    def __init__(self, at: int):
        self.at = at

    def __call__(self) -> float:
        return self.at

    def set(self, at: int) -> datetime:
        self.at = at
        return datetime.fromtimestamp(at, UTC)


def around(start: int, end: int) -> dict:
    """The weekly schedule, in ZONE, whose one window runs from `start` to
    `end` (whole minutes, under a day apart)."""
    first, last = (datetime.fromtimestamp(t, ZoneInfo(ZONE)) for t in (start, end))
    # "24:00" is the end of a day (devices/schedules.py).
    until = "24:00" if last.time() == datetime.min.time() else f"{last:%H:%M}"
    return weekly(ZONE, (f"{first:%a}".lower(), f"{first:%H:%M}", until))


@pytest.fixture
def window() -> tuple[int, int]:
    """Two minutes that start at least a minute and a half from now: the
    credentials the API issues now are good all through them."""
    start = math.ceil((time.time() + 90) / 60) * 60
    return start, start + 120


@pytest.fixture
def clock(window) -> SetClock:
    return SetClock(window[0] - 60)


@pytest.fixture
def live(world, table, shared_redis, dynamodb_endpoint, settings, client_for, tmp_path, clock):
    test_database_url()  # the worker must see the test database: PostgreSQL only
    handler = build(lambda_env(table.name, dynamodb_endpoint))
    handler.authorizer.clock = clock
    with live_platform(world=world, table=table, redis_url=shared_redis, dynamodb_endpoint=dynamodb_endpoint,
                       settings=settings, client_for=client_for, tmp_path=tmp_path, handler=handler) as platform:
        platform.start_worker()
        yield platform


def written():
    """Until every snapshot the database wants is in DynamoDB."""
    wait_until(lambda: not PrincipalSync.objects.lagging().exists(), what="the snapshot pushes")


def test_a_sharee_reaches_the_device_only_inside_its_window_and_is_dropped_at_its_end(live, world, window, clock):
    start, end = window
    ShareFactory(tenant=world.tenant, device=world.lock, grantee=world.alice, created_by=world.owner,
                 level=Level.VIEW, schedule=around(start, end))
    outbox.record_everyone(tenants=Tenant.objects.all())
    written()
    telemetry = f"dev/{world.lock.thing_name}/out/telemetry"
    device = live.connected(live.creds(world.owner, device=world.lock))
    publishing = Telemetry(device, world.lock.thing_name).start()
    alices = live.creds(world.alice)
    try:
        # A minute before the window: she connects, but the lock is not hers.
        outside = live.client(alices)
        assert outside.connect(), outside.connack
        assert outside.subscribe(f"dev/{world.lock.thing_name}/out/#") == [NOT_AUTHORIZED]
        outside.close()

        clock.set(start + 30)
        sharee = live.connected(alices, f"dev/{world.lock.thing_name}/out/#")
        sharee.expect(telemetry)

        # Inside the authorizer's margin before the end, a new connection is
        # not given the lock; the open one keeps it until the end.
        clock.set(end - 5)
        late = live.client(live.creds(world.alice))
        assert late.connect() and late.subscribe(f"dev/{world.lock.thing_name}/out/#") == [NOT_AUTHORIZED]
        late.close()
        assert sweep.sweep_ended_shares(now=clock.set(end - 1)) == 0
        sharee.expect(telemetry)
        assert not sharee.disconnected.is_set()

        assert sweep.sweep_ended_shares(now=clock.set(end + 1)) == 1
        assert sharee.wait_disconnected() == ADMINISTRATIVE_ACTION
        assert not device.disconnected.is_set()  # the device lost nothing: it was not cut
    finally:
        publishing.stop()

    # Her credentials are still good, and connect; the lock is no longer in them.
    again = live.client(alices)
    assert again.connect(), again.connack
    assert again.subscribe(f"dev/{world.lock.thing_name}/out/#") == [NOT_AUTHORIZED]
