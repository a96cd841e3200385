"""The demo's simulated devices (authz/demo_devices.py): what each kind does
with a command or a shadow delta, what it sends, that everything it sends is
allowed by a device's own policy, when it renews its token, which credential
each connects with; and the command that runs them, live through local_iot
as `make run` runs them, the hall thermostat through the unsigned authorizer."""
import json
import logging
import queue
import time

import boto3
import pytest
from django.conf import settings as django_settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from authz import demo_devices as dd
from authz.management.commands import run_local_iot, simulate_devices
from authz.models import IssuedCredential
from authz.snapshots import outbox
from authz.tokens import credentials, rotation
from devices import services
from devices.management.commands.seed_demo import DEVICES
from devices.models import Level, Tenant
from lambda_bridge import policy, vocabulary
from lambda_bridge.evaluator import Connection
from tests.factories import DeviceFactory, DeviceTypeFactory
from tests.support.api import tenant_url
from tests.support.local_iot import RunningLocalIot
from tests.support.mqtt_client import Client, with_credentials

THING = "demo-front-lock"
REGION, ACCOUNT = "eu-west-1", "123456789012"


def run(kind: str, *steps, state=None):
    """Feed (topic suffix, payload) steps to a device of `kind`: its final
    state and every message it sent."""
    state = dd.initial_state(kind) if state is None else state
    sent = []
    for topic, payload in steps:
        state, messages = dd.handle(THING, kind, state, topic.format(thing=THING), json.dumps(payload).encode())
        sent += messages
    return state, sent


def reported(messages) -> list[dict]:
    return [m.payload["state"]["reported"] for m in messages if m.topic == f"$aws/things/{THING}/shadow/update"]


def retained_state(messages) -> dict:
    [last] = [m for m in messages if m.topic == f"dev/{THING}/out/state"][-1:]
    assert last.retain is True
    return last.payload


def refusals(messages) -> list[dict]:
    return [m.payload for m in messages if m.topic == f"dev/{THING}/out/events"]


# --- commands ------------------------------------------------------------------------


def test_a_lock_unlocks_and_locks_on_command_and_reports_each_change():
    state, sent = run(dd.LOCK, ("dev/{thing}/in/unlock", {}))
    assert state == {"locked": False}
    assert reported(sent) == [{"locked": False}] and retained_state(sent) == {"locked": False}

    state, sent = run(dd.LOCK, ("dev/{thing}/in/lock", {}), state=state)
    assert state == {"locked": True} and reported(sent) == [{"locked": True}]


def test_a_command_that_changes_nothing_sends_nothing():
    state, sent = run(dd.LOCK, ("dev/{thing}/in/lock", {}))  # it starts locked
    assert state == {"locked": True} and sent == []


def test_a_light_switches_toggles_and_dims():
    state, sent = run(dd.LIGHT, ("dev/{thing}/in/on", {}), ("dev/{thing}/in/brightness", {"value": 30}))
    assert state == {"power": "on", "brightness": 30}
    assert reported(sent) == [{"power": "on"}, {"brightness": 30}]

    state, _ = run(dd.LIGHT, ("dev/{thing}/in/toggle", {}), ("dev/{thing}/in/toggle", {}), state=state)
    assert state["power"] == "on"


@pytest.mark.parametrize("kind, topic, payload", [
    (dd.LIGHT, "dev/{thing}/in/brightness", {"value": 150}),
    (dd.LIGHT, "dev/{thing}/in/brightness", {"value": "50"}),
    (dd.LIGHT, "dev/{thing}/in/brightness", {"value": True}),
    (dd.LIGHT, "dev/{thing}/in/unlock", {}),
    (dd.LOCK, "dev/{thing}/in/on", {}),
    (dd.THERMOSTAT, "dev/{thing}/in/target", {"value": 45}),
    (dd.THERMOSTAT, "dev/{thing}/in/mode", {"value": "turbo"}),
])
def test_unknown_commands_and_values_out_of_range_are_refused_and_change_nothing(kind, topic, payload):
    state, sent = run(kind, (topic, payload))

    assert state == dd.initial_state(kind)
    assert reported(sent) == [] and len(refusals(sent)) == 1


def test_a_payload_that_is_not_json_is_a_refusal_not_a_crash():
    state, sent = dd.handle(THING, dd.LIGHT, dd.initial_state(dd.LIGHT), f"dev/{THING}/in/brightness", b"\xff{")
    assert state == dd.initial_state(dd.LIGHT) and len(refusals(sent)) == 1


def test_messages_for_another_thing_are_ignored():
    state, sent = dd.handle(THING, dd.LOCK, {"locked": True}, "dev/demo-other/in/unlock", b"{}")
    assert state == {"locked": True} and sent == []


# --- the shadow --------------------------------------------------------------------------


def delta(state: dict) -> tuple[str, dict]:
    return "$aws/things/{thing}/shadow/update/delta", {"version": 7, "timestamp": 1, "state": state}


def test_a_shadow_delta_is_honoured_like_the_command_it_stands_for():
    state, sent = run(dd.LOCK, delta({"locked": False}))
    assert state == {"locked": False} and reported(sent) == [{"locked": False}]

    state, sent = run(dd.THERMOSTAT, delta({"target": 24, "mode": "cool"}))
    assert (state["target"], state["mode"]) == (24.0, "cool")
    assert reported(sent) == [{"target": 24.0, "mode": "cool"}]


def test_a_delta_the_device_cannot_honour_is_refused_whole():
    state, sent = run(dd.THERMOSTAT, delta({"target": 24, "colour": "red"}))
    assert state == dd.initial_state(dd.THERMOSTAT)
    assert reported(sent) == [] and len(refusals(sent)) == 1


def test_a_delta_for_the_state_it_is_in_is_reported_again_so_the_delta_clears():
    """The shadow still differs from what was last reported (say the device
    missed a report): only a new report ends the delta."""
    state, sent = run(dd.LOCK, delta({"locked": True}))
    assert state == {"locked": True} and reported(sent) == [{"locked": True}]


# --- telemetry ---------------------------------------------------------------------------


def test_a_heating_thermostat_warms_the_room_towards_its_target_and_stops_there():
    state = {"mode": "heat", "target": 19.0, "temperature": 18.0}
    temperatures = []
    for _ in range(4):
        state, sent = dd.tick(THING, dd.THERMOSTAT, state)
        temperatures.append(state["temperature"])
        [telemetry] = [m.payload for m in sent if m.topic == f"dev/{THING}/out/telemetry"]
        assert telemetry["temperature"] == state["temperature"]
    assert temperatures == [18.5, 19.0, 19.0, 19.0]


@pytest.mark.parametrize("mode, temperature", [("heat", 22.0), ("cool", 18.0), ("off", 15.0)])
def test_a_thermostat_does_not_move_the_room_the_wrong_way(mode, temperature):
    state = {"mode": mode, "target": 20.0, "temperature": temperature}
    new, sent = dd.tick(THING, dd.THERMOSTAT, state)
    assert new == state and reported(sent) == []


def test_a_lights_telemetry_shows_its_power_draw():
    _, off = dd.tick(THING, dd.LIGHT, {"power": "off", "brightness": 50})
    _, on = dd.tick(THING, dd.LIGHT, {"power": "on", "brightness": 50})
    assert off[0].payload["watts"] == 0 and on[0].payload["watts"] > 0


# --- everything it sends, its own policy allows ------------------------------------------


@pytest.mark.parametrize("kind", [dd.LIGHT, dd.THERMOSTAT, dd.LOCK])
def test_a_device_only_sends_and_subscribes_where_its_policy_allows(kind):
    conn = Connection(policy.device_documents(thing=THING, region=REGION, account=ACCOUNT), REGION, ACCOUNT, THING)
    state = dd.initial_state(kind)
    sent = dd.announce(THING, state)
    for command in ("on", "off", "lock", "unlock", "target", "mode", "nonsense"):
        state, messages = dd.handle(THING, kind, state, f"dev/{THING}/in/{command}", b'{"value": "cool"}')
        sent += messages
        state, messages = dd.tick(THING, kind, state)
        sent += messages

    assert sent
    for message in sent:
        assert conn.can("iot:Publish", message.topic), message.topic
        assert not message.retain or conn.can("iot:RetainPublish", message.topic), message.topic
    for topic in dd.subscriptions(THING):
        assert conn.can("iot:Subscribe", topic), topic


# --- tokens and reconnects ----------------------------------------------------------------


@pytest.mark.parametrize("lifetime", [600, 3600, 86_400])
def test_a_token_is_renewed_while_it_still_has_more_than_the_authorizers_minimum(lifetime):
    issued = 1_000_000.0
    renew = dd.renew_at(issued, issued + lifetime)
    assert issued < renew <= issued + lifetime - 300


def test_a_day_long_device_token_is_renewed_a_quarter_of_an_hour_before_it_expires():
    assert dd.renew_at(0.0, 86_400.0) == 86_400.0 - 15 * 60


def test_reconnects_back_off_to_a_minute():
    delays = [dd.backoff(attempt) for attempt in range(10)]
    assert delays[:3] == [1, 2, 4]
    assert delays == sorted(delays) and max(delays) == 60


# --- which credential --------------------------------------------------------------------


def test_the_hall_thermostat_alone_of_the_demos_devices_connects_with_a_compact_credential():
    kinds = {thing: dd.credential_for(thing) for thing, *_ in DEVICES}
    assert {thing for thing, kind in kinds.items() if kind == vocabulary.COMPACT_CREDENTIAL} == {
        "demo-hall-thermostat"}
    assert set(kinds.values()) == {vocabulary.COMPACT_CREDENTIAL, vocabulary.SIGNED_CREDENTIAL}


def test_what_a_device_connects_with_never_shows_its_token():
    """The token rides in the username (signed) or the password (compact):
    neither appears where a log line or a traceback would print the credentials."""
    now = timezone.now()
    for kind in vocabulary.CREDENTIAL_KINDS:
        creds = credentials.Credentials(token="not-for-logs", token_signature="", client_id=THING, expires_at=now,
                                        kid="k", authorizer_name="devshare-x", token_key_name="devshare-token",
                                        endpoint="localhost:18443", credential=kind)
        issued = dd.Issued.of(creds, now)
        assert (issued.mqtt_username, issued.mqtt_password, issued.credential) == (
            creds.mqtt_username, creds.mqtt_password, kind)
        assert "not-for-logs" in issued.mqtt_username + issued.mqtt_password
        assert "not-for-logs" not in repr(issued) and THING in repr(issued)


def test_the_endpoint_is_read_as_the_credentials_api_hands_it_out():
    assert dd.Endpoint.parse("localhost:18443", "ca.pem") == dd.Endpoint("localhost", 18443, "ca.pem")
    assert dd.Endpoint.parse("abc-ats.iot.eu-west-1.amazonaws.com", "ca.pem").port == 443


# --- the command ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_command_refuses_unknown_devices(world):
    with pytest.raises(CommandError, match="No such device: demo-nowhere"):
        call_command("simulate_devices", "--thing", "demo-nowhere")


@pytest.mark.django_db
def test_the_command_needs_local_iots_ca(world, tmp_path):
    with pytest.raises(CommandError, match="No CA certificate"):
        call_command("simulate_devices", "--thing", world.lamp.thing_name, "--ca-file", str(tmp_path / "no.pem"))


# --- live: through local_iot, as `make run` runs them --------------------------------------


@pytest.fixture
def live(world, table, settings, tmp_path, django_capture_on_commit_callbacks):
    """The world's lock is a lock; Bob may control it (a share), the owner
    owns it; keys and snapshots are in moto, and local_iot runs in front with
    the environment `manage.py run_local_iot` gives it."""
    world.lock.device_type = DeviceTypeFactory(tenant=world.tenant, slug=dd.LOCK)
    world.lock.save(update_fields=["device_type"])
    rotation.rotate(actor=None)
    with django_capture_on_commit_callbacks(execute=True):
        services.create_share(actor=world.owner, grantee=world.bob, device=world.lock, level=Level.CONTROL)
        outbox.record_everyone(tenants=Tenant.objects.all())
    _, env = run_local_iot.command_line(hosts=["127.0.0.1"], extra=[])
    with RunningLocalIot(env, cert_dir=tmp_path,
                         compact_authorizer_name=django_settings.IOT_COMPACT_AUTHORIZER_NAME) as iot:
        # The credentials name it, as local settings name `make run`'s.
        settings.IOT_ENDPOINT = f"localhost:{iot.tls_port}"
        yield iot


def device_tokens(device, count: int) -> queue.Queue:
    """`count` device tokens, issued here: the device's thread must not touch
    the test's database transaction. Each is taken by one connection attempt."""
    tokens = queue.Queue()
    for _ in range(count):
        creds = credentials.issue_device_credentials(actor=None, device=device, by_operator=True)
        tokens.put(dd.Issued.of(creds, timezone.now()))
    return tokens


def simulated_lock(iot, thing: str, tokens: queue.Queue, **options) -> dd.SimulatedDevice:
    endpoint = dd.Endpoint.parse(django_settings.IOT_ENDPOINT, iot.ca_file)
    return dd.SimulatedDevice(thing=thing, kind=dd.LOCK, issue=lambda: tokens.get_nowait(), endpoint=endpoint,
                              **options)


def app(iot, client_for, person, world) -> Client:
    """A person's app: credentials from the API, paho over TLS with `mqttUsername`."""
    response = client_for(person).post(tenant_url("iot-credentials", world), {}, format="json")
    assert response.status_code == 201, response.content
    client = with_credentials(iot, response.json(), via="tls", version=5)
    assert client.connect()
    return client


def next_on(client: Client, topic: str) -> dict:
    """The next message on `topic` (others, such as telemetry, are passed over)."""
    while True:
        [(arrived, payload)] = client.received(1) or [(None, None)]
        assert arrived is not None, f"nothing on {topic}"
        if arrived == topic:
            return json.loads(payload)


def iot_data(iot):
    return boto3.client("iot-data", endpoint_url=f"http://127.0.0.1:{iot.http_port}", region_name="us-east-1",
                        aws_access_key_id="local", aws_secret_access_key="local")


def shadow_state(iot, thing: str) -> dict:
    return json.load(iot_data(iot).get_thing_shadow(thingName=thing)["payload"])["state"]


@pytest.mark.django_db
def test_a_simulated_lock_obeys_its_sharees_and_its_owners_apps_through_local_iot(live, world, client_for):
    thing = world.lock.thing_name
    bob, owner = app(live, client_for, world.bob, world), app(live, client_for, world.owner, world)
    lock = simulated_lock(live, thing, device_tokens(world.lock, 1), interval=0.5)
    try:
        assert bob.subscribe(f"dev/{thing}/out/#") == [1]
        assert bob.subscribe(f"dev/{world.lamp.thing_name}/out/#") == [0x87]  # not shared with Bob
        lock.start()
        assert next_on(bob, f"dev/{thing}/out/state") == {"locked": True}  # announced when it connected
        assert next_on(bob, f"dev/{thing}/out/telemetry") == {"locked": True}

        # Bob's command: the device honours it and reports it to its shadow.
        assert bob.publish(f"dev/{thing}/in/unlock", b"{}") == 0
        assert next_on(bob, f"dev/{thing}/out/state") == {"locked": False}
        assert shadow_state(live, thing) == {"reported": {"locked": False}}
        # A command it has no such thing as is refused, by the device, aloud.
        assert bob.publish(f"dev/{thing}/in/on", b"{}") == 0
        assert next_on(bob, f"dev/{thing}/out/events")["refused"] == "on"

        # The owner's app asks through the shadow: the delta reaches the
        # device, which locks and reports, so no delta is left.
        update = json.dumps({"state": {"desired": {"locked": True}}}).encode()
        assert owner.publish(f"$aws/things/{thing}/shadow/update", update) == 0
        assert next_on(bob, f"dev/{thing}/out/state") == {"locked": True}
        assert shadow_state(live, thing) == {"desired": {"locked": True}, "reported": {"locked": True}}
        assert lock.state == {"locked": True}
    finally:
        lock.stop()
        bob.close()
        owner.close()


@pytest.mark.django_db
def test_a_simulated_device_reconnects_when_dropped_and_renews_its_token_in_time(live, world, client_for, caplog):
    """A drop (iot-data DeleteConnection) and a token due for renewal each
    give exactly one new connection, on a fresh token; the device never
    reconnects on its own with the token it had (paho's own reconnect would)."""
    caplog.set_level(logging.INFO)
    thing = world.lock.thing_name
    now = [time.time()]
    tokens = device_tokens(world.lock, 3)
    watcher = app(live, client_for, world.owner, world)
    # The default interval: a device only notices a drop between ticks unless told.
    lock = simulated_lock(live, thing, tokens, clock=lambda: now[0])
    try:
        assert watcher.subscribe(f"dev/{thing}/out/state") == [1]
        lock.start()
        assert next_on(watcher, f"dev/{thing}/out/state") == {"locked": True}
        first = iot_data(live).get_connection(clientId=thing)["connectedSince"]

        assert iot_data(live).delete_connection(clientId=thing)["ResponseMetadata"]["HTTPStatusCode"] == 200
        assert next_on(watcher, f"dev/{thing}/out/state") == {"locked": True}  # back, announcing itself
        assert tokens.qsize() == 1
        again = iot_data(live).get_connection(clientId=thing)
        assert again["connected"] is True and again["connectedSince"] > first

        now[0] += 86_400  # a day later by the device's clock: its token is due
        assert next_on(watcher, f"dev/{thing}/out/state") == {"locked": True}
        assert tokens.qsize() == 0
        assert any(r.getMessage() == f"{thing}: renewing its token" for r in caplog.records)
        assert iot_data(live).get_connection(clientId=thing)["connected"] is True
    finally:
        lock.stop()
        watcher.close()
    # The gateway admitted the device three times, once per token.
    admitted = [json.loads(r.getMessage()) for r in caplog.records if r.name == "local_iot.gateway"]
    assert [(a["client_id"], a["decision"]) for a in admitted if a["client_id"] == thing] == [(thing, "allow")] * 3


@pytest.mark.django_db
def test_the_simulated_hall_thermostat_connects_through_the_unsigned_authorizer_and_obeys(
        live, world, client_for, caplog, capsys, django_capture_on_commit_callbacks):
    """As `make run` runs it: the command issues it a compact credential, the
    device connects with its MQTT username and password, the gateway names
    the unsigned authorizer and the Lambda judges a compact credential."""
    caplog.set_level(logging.INFO)
    thermostat = DeviceFactory(tenant=world.tenant, owner=world.owner, thing_name="demo-hall-thermostat",
                               device_type=DeviceTypeFactory(tenant=world.tenant, slug=dd.THERMOSTAT))
    with django_capture_on_commit_callbacks(execute=True):
        outbox.record_everyone(tenants=Tenant.objects.all())
    thing = thermostat.thing_name
    tokens = queue.Queue()
    # Issued here: the device's thread must not touch the test's transaction.
    tokens.put(simulate_devices.issued_for(thermostat))
    watcher = app(live, client_for, world.owner, world)
    endpoint = dd.Endpoint.parse(django_settings.IOT_ENDPOINT, live.ca_file)
    device = dd.SimulatedDevice(thing=thing, kind=dd.THERMOSTAT, issue=lambda: tokens.get_nowait(),
                                endpoint=endpoint, interval=0.5)
    try:
        assert watcher.subscribe(f"dev/{thing}/out/#") == [1]
        capsys.readouterr()
        device.start()
        assert next_on(watcher, f"dev/{thing}/out/state") == dd.initial_state(dd.THERMOSTAT)
        assert watcher.publish(f"dev/{thing}/in/target", b'{"value": 25}') == 0
        # Its room warms meanwhile, each step a state of its own: the command's is the one with the new target.
        while (state := next_on(watcher, f"dev/{thing}/out/state"))["target"] != 25.0:
            assert state["target"] == dd.initial_state(dd.THERMOSTAT)["target"]
    finally:
        device.stop()
        watcher.close()

    assert IssuedCredential.objects.get(client_id=thing).credential == vocabulary.COMPACT_CREDENTIAL
    gateway = [json.loads(r.getMessage()) for r in caplog.records if r.name == "local_iot.gateway"]
    assert [(d["authorizer"], d["decision"]) for d in gateway if d["client_id"] == thing] == [("unsigned", "allow")]
    judged = [json.loads(line) for line in capsys.readouterr().out.splitlines()
              if line.startswith('{"event":"authorize"')]
    assert [(j["credential"], j["decision"]) for j in judged if j["principal"] == f"device:{thing}"] == [
        (vocabulary.COMPACT_CREDENTIAL, "allow")]
