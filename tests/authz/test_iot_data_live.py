"""The IoT gateway against a running local_iot's data plane
(docs/local-iot.md#the-broker, docs/deploy.md#8-the-data-plane): real paho
clients admitted by the real authorizer handler on moto with real tokens,
and the gateway built by `IotGateway.from_settings` from the settings a
deployment sets, signing with SigV4 under local_iot's access key id. What a
client observes (its disconnect, the messages it receives) is the verdict."""
import pytest

from authz.tokens import iot
from lambda_bridge import snapshot
from lambda_bridge.snapshot import Entry
from tests.support.lambda_env import lambda_env
from tests.support.local_iot import LAMP, RunningLocalIot, signed
from tests.support.mqtt_client import over

APP = "u1.7.app"  # user 7's app: the token's client id (tests/support/authorizer.py)
STATUS = f"dev/{LAMP}/out/status"  # where the lamp leaves its will
MQTT5_ADMINISTRATIVE_ACTION = 0x98  # what local_iot's MQTT 5 DISCONNECT says for DeleteConnection


@pytest.fixture
def authorizer_fn(cold_start):
    """The authorizer function: slot A active, user 7 controls the lamp, the lamp is itself."""
    started = cold_start()
    started.put_keyring()
    started.put_snapshot(principal="7", entries=[Entry(LAMP, snapshot.CONTROL)])
    started.put_snapshot(kind=snapshot.DEVICE, principal=LAMP, entries=[Entry(LAMP, snapshot.OWNER)])
    return started


@pytest.fixture
def local_iot(authorizer_fn, table, dynamodb_endpoint, tmp_path):
    with RunningLocalIot(lambda_env(table.name, dynamodb_endpoint), cert_dir=tmp_path / "certs") as running:
        yield running


@pytest.fixture
def live_gateway(local_iot, settings) -> iot.IotGateway:
    """The gateway as the platform builds it, pointed at local_iot's data plane."""
    settings.IOT_DATA_ENDPOINT_URL = f"http://127.0.0.1:{local_iot.http_port}"
    settings.IOT_REGION = "eu-west-1"
    settings.AWS_ACCESS_KEY_ID, settings.AWS_SECRET_ACCESS_KEY = "local", "local-secret"
    return iot.IotGateway.from_settings()


@pytest.fixture
def connect(local_iot, authorizer_fn):
    """connect(client_id, credentials, **Client options) → a connected paho client over TCP."""
    made = []

    def make(client_id: str, credentials, **options):
        client = over(local_iot, "tcp", client_id=client_id, username=credentials.username(),
                      **{"version": 5, "keepalive": 30, **options})
        made.append(client)
        assert client.connect(), client.connack
        return client

    yield make
    for client in made:
        client.close()


def app(connect, authorizer_fn, **options):
    return connect(APP, signed(authorizer_fn), **options)


def lamp(connect, authorizer_fn, **options):
    return connect(LAMP, signed(authorizer_fn, sub=f"device:{LAMP}"), **options)


def test_get_connection_says_a_live_client_is_connected(live_gateway, connect, authorizer_fn):
    app(connect, authorizer_fn, version=4, clean=False, keepalive=45)

    connection = live_gateway.get_connection(APP)

    assert (connection.client_id, connection.connected) == (APP, True)
    assert (connection.clean_session, connection.keep_alive) == (False, 45)
    assert connection.connected_since is not None and connection.connected_since.tzinfo is not None
    assert (connection.disconnected_at, connection.disconnect_reason) == (None, "")


@pytest.mark.parametrize("version", [4, 5], ids=["mqtt311", "mqtt5"])
def test_delete_connection_closes_the_clients_connection(live_gateway, connect, authorizer_fn, version):
    client = app(connect, authorizer_fn, version=version)
    assert client.subscribe(f"dev/{LAMP}/out/#") == [1]

    assert live_gateway.delete_connection(APP) is True

    reason = client.wait_disconnected()
    if version == 5:
        assert reason == MQTT5_ADMINISTRATIVE_ACTION
    after = live_gateway.get_connection(APP)
    assert (after.connected, after.disconnect_reason) == (False, "API_INITIATED_DISCONNECT")
    assert after.disconnected_at is not None and after.connected_since is None


def test_a_second_delete_finds_nothing_to_close(live_gateway, connect, authorizer_fn):
    client = app(connect, authorizer_fn)
    assert live_gateway.delete_connection(APP) is True
    client.wait_disconnected()

    assert live_gateway.delete_connection(APP) is False


def test_an_unknown_client_id_has_no_connection(live_gateway, connect, authorizer_fn):
    app(connect, authorizer_fn)  # someone is connected, under another client id

    assert live_gateway.get_connection("u1.7.never-connected") is None
    assert live_gateway.delete_connection("u1.7.never-connected") is False


@pytest.mark.parametrize(("prevent_will", "wills"), [(True, []), (False, [(STATUS, b"offline")])],
                         ids=["will-prevented", "will-published"])
def test_prevent_will_decides_whether_the_will_is_published(live_gateway, connect, authorizer_fn, prevent_will, wills):
    watcher = app(connect, authorizer_fn)  # user 7 reads the lamp's out/ topics
    assert watcher.subscribe(f"dev/{LAMP}/out/#") == [1]
    device = lamp(connect, authorizer_fn, will=(STATUS, b"offline", 1, False))

    assert live_gateway.delete_connection(LAMP, prevent_will=prevent_will) is True
    device.wait_disconnected()
    # A message routed after the disconnect: any will would have come before it.
    fence = f"dev/{LAMP}/out/fence"
    live_gateway.data_client.publish(topic=fence, qos=1, payload=b"")

    assert watcher.received(len(wills) + 1) == [*wills, (fence, b"")]
    assert watcher.nothing_received()


@pytest.mark.parametrize(("clean_session", "session_present"), [(True, False), (False, True)],
                         ids=["session-cleaned", "session-kept"])
def test_clean_session_decides_whether_a_persistent_session_survives(live_gateway, connect, authorizer_fn,
                                                                     clean_session, session_present):
    first = app(connect, authorizer_fn, version=4, clean=False)
    assert first.subscribe(f"dev/{LAMP}/out/#") == [1]

    assert live_gateway.delete_connection(APP, clean_session=clean_session) is True
    first.wait_disconnected()

    again = app(connect, authorizer_fn, version=4, clean=False)
    assert again.connack[1] is session_present
