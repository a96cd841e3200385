"""Exact ends and the token cut-off, live (docs/decisions/0007-exact-ends.md,
docs/snapshots.md#the-token-cut-off): paho connected to local_iot, whose
gateway fixes the connection's end with the first answer and calls the real
handler (against moto) at every refresh.

Time is scaled: the broker's lifetimes by SCALE, and the handler's clock runs
1/SCALE times as fast from the tokens' issue time, so AWS's 300 s refresh is
SCALE × 300 s here and the handler sees tokens age as the gateway does. The
tests wait for events (answers, the connection's end), never for a clock."""
import threading
import time

import pytest

from lambda_bridge import snapshot
from lambda_bridge.authorizer import Authorizer
from lambda_bridge.config import Config
from lambda_bridge.handler import Handler
from lambda_bridge.snapshot import Entry
from lambda_bridge.store import DynamoStore
from local_iot import reasons
from tests.support.local_iot import LAMP, RecordingHandler, RunningLocalIot, signed
from tests.support.mqtt_client import Client, over

# 300 AWS seconds are 1.2 s; a refresh may be 30 AWS seconds (120 ms) late and still be accepted.
SCALE = 0.004


class ScaledClock:
    """Epoch seconds that pass 1/SCALE times as fast as real ones, from `origin`."""

    def __init__(self, origin: int):
        self.origin, self.started = origin, time.monotonic()
        self.readings: list[float] = []  # what the authorizer read, once per decision

    def __call__(self) -> float:
        return self.origin + (time.monotonic() - self.started) / SCALE

    def read(self) -> float:
        self.readings.append(self())
        return self.readings[-1]


class Calls(RecordingHandler):
    """The real handler on a scaled clock, each decision's reason kept beside its answer."""

    def __init__(self, env: dict, clock: ScaledClock):
        config = Config.from_env(env)
        store = DynamoStore.from_config(config, credentials={"aws_access_key_id": env["AWS_ACCESS_KEY_ID"],
                                                             "aws_secret_access_key": env["AWS_SECRET_ACCESS_KEY"]})
        handler = Handler(Authorizer(config, store, clock=clock.read))
        super().__init__(handler)
        self.clock = clock
        self.reasons: list[str] = []
        decide = handler.authorizer.decide

        def recorded(event):
            decision = decide(event)
            self.reasons.append(decision.reason)
            return decision

        handler.authorizer.decide = recorded


@pytest.fixture
def live(fn, env, tmp_path):
    """live(lifetime, cutoff_after_iat=None) → (client, calls, clock, iat): user 7's app
    connecting over TCP with MQTT 5 with a token of `lifetime` AWS seconds issued now,
    its snapshot carrying a cut-off that many seconds after the token's iat if given."""
    running, clients = [], []

    def connect(lifetime: int, *, cutoff_after_iat: int | None = None):
        issued = int(time.time())
        clock = ScaledClock(issued)
        if cutoff_after_iat is not None:
            fn.put_snapshot(principal="7", entries=[Entry(LAMP, snapshot.CONTROL)], cutoff=issued + cutoff_after_iat)
        calls = Calls(env, clock)
        iot = RunningLocalIot(env, cert_dir=tmp_path / "certs", time_scale=SCALE, handler=calls)
        running.append(iot)
        credentials = signed(fn, iat=issued, nbf=issued, exp=issued + lifetime)
        # Keep-alive 0 asks for the broker's longest (1,200 s, scaled); kept_alive() sends the packets.
        client = over(iot, "tcp", client_id="u1.7.app", version=5, username=credentials.username(), keepalive=0)
        clients.append(client)
        client.connect()
        return client, calls, clock, issued

    yield connect
    for client in clients:
        client.close()
    for iot in running:
        iot.stop()


def kept_alive(client: Client) -> threading.Thread:
    """Sends a QoS 0 PUBLISH every 0.5 s (125 AWS seconds) until the
    connection ends, so the broker's keep-alive never ends it first."""

    def beat():
        while not client.disconnected.wait(0.5):
            client.paho.publish(f"dev/{LAMP}/in/ping", b"", 0)

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    return thread


def wait_until(clock: ScaledClock, moment: float) -> None:
    while clock() < moment:
        time.sleep(0.01)


def ended_at_expiry(client: Client, calls: Calls) -> list[tuple[dict, float]]:
    """Asserts the connection ended at the token's expiry and not before:
    by its deadline (fixed at connect), or by a refresh due at that same
    moment that found the token expired. Never by `expires_too_soon`, which
    is how a refresh cut a token short under the old 330 s rule.
    Returns (answer, the authorizer's clock) of every accepted call."""
    assert client.disconnected.wait(40), "still connected after the token expired"
    *accepted, last = calls.reasons
    assert set(accepted) <= {"ok"} and last in ("ok", "expired"), calls.reasons
    if client.disconnect_reason.value != reasons.MAXIMUM_CONNECT_TIME:
        assert (client.disconnect_reason.value, last) == (reasons.NOT_AUTHORIZED, "expired")
    return [(answer, reading) for answer, reading, reason in zip(calls.answers, calls.clock.readings, calls.reasons,
                                                                  strict=True) if reason == "ok"]


def test_a_600_second_token_outlives_the_first_refresh_point_and_ends_at_expiry(live):
    client, calls, clock, issued = live(600)
    assert client.accepted, client.connack

    wait_until(clock, issued + 330)  # past where a refresh used to refuse it
    assert not client.disconnected.is_set()
    assert client.publish(f"dev/{LAMP}/in/power", b"on") == 0  # still authorized, not merely open

    # One answer, carrying the connection to the token's expiry: no refresh before it.
    [(first, reading)] = ended_at_expiry(client, calls)
    assert first["disconnectAfterInSeconds"] == first["refreshAfterInSeconds"] == issued + 600 - int(reading)


def test_a_3600_second_token_is_not_cut_at_3300_seconds_but_at_3600(live):
    client, calls, clock, issued = live(3600)
    assert client.accepted, client.connack
    kept_alive(client)

    accepted = ended_at_expiry(client, calls)

    # Refreshed every 300 s, the deadline set at connect to the token's expiry,
    # and the last answer carrying the connection to it.
    (first, first_read), *_, (last, last_read) = accepted
    assert first["disconnectAfterInSeconds"] == issued + 3600 - int(first_read)
    assert [answer["refreshAfterInSeconds"] for answer, _ in accepted[:-1]] == [300] * (len(accepted) - 1)
    assert last["refreshAfterInSeconds"] == issued + 3600 - int(last_read) < 630
    assert len(accepted) >= 10


def test_a_token_issued_before_the_cut_off_is_refused_at_connect(live):
    client, calls, _, _ = live(3600, cutoff_after_iat=1)

    assert not client.accepted
    assert calls.reasons == ["token_revoked"]


def test_a_cut_off_written_while_connected_ends_the_connection_at_the_next_refresh(fn, live):
    client, calls, clock, issued = live(3600)
    assert client.accepted, client.connack
    kept_alive(client)

    # The revoking write: tokens issued before the next second are refused.
    fn.put_snapshot(principal="7", entries=[Entry(LAMP, snapshot.CONTROL)], cutoff=int(clock()) + 1)

    assert client.disconnected.wait(10), "still connected after a refresh past the cut-off"
    assert client.disconnect_reason.value == reasons.NOT_AUTHORIZED
    assert calls.reasons[0] == "ok" and calls.reasons[-1] == "token_revoked"
