"""The demo's simulated devices (authz/demo_devices.py): what each kind does
with a command or a shadow delta, what it sends, that everything it sends is
allowed by a device's own policy, when it renews its token; and the command
that runs them."""
import importlib.util
import json
import queue
import ssl
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from authz import demo_devices as dd
from lambda_bridge import policy
from lambda_bridge.evaluator import Connection

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
    assert issued < renew <= issued + lifetime - 330


def test_a_day_long_device_token_is_renewed_a_quarter_of_an_hour_before_it_expires():
    assert dd.renew_at(0.0, 86_400.0) == 86_400.0 - 15 * 60


def test_reconnects_back_off_to_a_minute():
    delays = [dd.backoff(attempt) for attempt in range(10)]
    assert delays[:3] == [1, 2, 4]
    assert delays == sorted(delays) and max(delays) == 60


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


# --- live: through local_iot (issue 14, being written alongside) ----------------------------


LIVE = (importlib.util.find_spec("local_iot.server") is not None
        and (Path(__file__).parents[1] / "support" / "local_iot.py").exists())


@pytest.mark.skipif(not LIVE, reason="local_iot.server and tests/support/local_iot.py are not here yet")
@pytest.mark.django_db
def test_a_simulated_lock_obeys_its_owners_app_through_local_iot(world, table, settings, tmp_path,
                                                                 django_capture_on_commit_callbacks):
    import paho.mqtt.client as mqtt

    from authz.management.commands import run_local_iot
    from authz.snapshots import outbox
    from authz.tokens import credentials, rotation
    from devices.models import Tenant
    from tests.factories import DeviceTypeFactory
    from tests.support.local_iot import RunningLocalIot

    world.lock.device_type = DeviceTypeFactory(tenant=world.tenant, slug=dd.LOCK)
    world.lock.save(update_fields=["device_type"])
    rotation.rotate(actor=None)
    with django_capture_on_commit_callbacks(execute=True):
        outbox.record_everyone(tenants=Tenant.objects.all())
    _, env = run_local_iot.command_line(hosts=["127.0.0.1"], extra=[])
    with RunningLocalIot(env, cert_dir=tmp_path) as iot:
        settings.IOT_ENDPOINT = f"localhost:{iot.tls_port}"
        endpoint = dd.Endpoint.parse(settings.IOT_ENDPOINT, iot.ca_file)
        device_creds = credentials.issue_device_credentials(actor=None, device=world.lock, by_operator=True)
        issued = dd.Issued(device_creds.client_id, device_creds.mqtt_username, 0.0, 1e12)
        lock = dd.SimulatedDevice(thing=world.lock.thing_name, kind=dd.LOCK, issue=lambda: issued,
                                  endpoint=endpoint, interval=0.5)
        app_creds = credentials.issue_user_credentials(actor=world.owner, tenant=world.tenant)
        states: queue.Queue[dict] = queue.Queue()
        subscribed = queue.Queue()
        app = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=app_creds.client_id, protocol=mqtt.MQTTv5)
        app.username_pw_set(app_creds.mqtt_username)
        context = ssl.create_default_context(cafile=iot.ca_file)
        context.set_alpn_protocols(["mqtt"])
        app.tls_set_context(context)
        app.on_message = lambda c, u, message: states.put(json.loads(message.payload))
        app.on_subscribe = lambda c, u, mid, codes, props: subscribed.put(codes)
        app.connect(endpoint.host, endpoint.port)
        app.loop_start()
        lock.start()
        try:
            app.subscribe(f"dev/{world.lock.thing_name}/out/state", qos=1)
            assert not subscribed.get(timeout=10)[0].is_failure
            assert states.get(timeout=10) == {"locked": True}  # announced (and retained) when it connected
            app.publish(f"dev/{world.lock.thing_name}/in/unlock", b"{}", qos=1)
            while (state := states.get(timeout=10)) != {"locked": False}:
                assert state == {"locked": True}
        finally:
            lock.stop()
            app.loop_stop()
            app.disconnect()
