"""Fixtures of the local_iot tests (docs/testing.md): a broker on loopback
with a policy gateway and real paho-mqtt clients, closed after each test;
the real authorizer handler on the session's moto table; and the data
plane in front of a broker, with a client watching what it routes."""
import pytest

from lambda_bridge import snapshot
from lambda_bridge.handler import build
from lambda_bridge.snapshot import Entry
from local_iot import certs
from local_iot.gateway import Gateway
from local_iot.shadow import Shadows
from tests.support import compact_device
from tests.support.broker_server import FROZEN_NOW, BrokerServer
from tests.support.lambda_env import KEY_NAME, lambda_env
from tests.support.local_iot import LAMP, RecordingHandler
from tests.support.mqtt_client import Client
from tests.support.policy_gateway import EVERYTHING, PolicyGateway, document


@pytest.fixture
def gateway() -> PolicyGateway:
    return PolicyGateway()


@pytest.fixture
def serve(gateway):
    """serve(time_scale=…, shadows=…, authorizer=…) → a running BrokerServer (one per call)."""
    started = []

    def start(**options) -> BrokerServer:
        started.append(BrokerServer(gateway, **options))
        return started[-1]

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def server(serve) -> BrokerServer:
    return serve()


@pytest.fixture
def client(request):
    """client(client_id, password, version=…, connect=True, port=…, **options) → a paho Client,
    of the `server` fixture's broker unless `port` names another's."""
    made = []

    def make(client_id: str, password: bytes | None = b"pw", *, connect: bool = True, port: int | None = None,
             **options) -> Client:
        if port is None:
            port = request.getfixturevalue("server").port  # started only when a test uses it
        made.append(Client(port, client_id, password, **options))
        if connect:
            made[-1].connect()
        return made[-1]

    yield make
    for one in made:
        one.close()


@pytest.fixture(params=[4, 5], ids=["mqtt311", "mqtt5"])
def version(request) -> int:
    return request.param


def _watching(gateway, client, port: int, filters, **subscribe_options) -> Client:
    gateway.allow(b"watch", document(EVERYTHING))
    watching = client("watcher", b"watch", port=port)
    for topic_filter in filters:
        assert watching.subscribe(topic_filter, **subscribe_options) == [1]
    return watching


@pytest.fixture
def watcher(gateway, client, server) -> Client:
    """A client of `server` that sees every message, the broker's lifecycle events included."""
    return _watching(gateway, client, server.port, ("#", "$aws/events/presence/+/+"))


# --- the real authorizer ----------------------------------------------------------------


@pytest.fixture
def env(table, dynamodb_endpoint):
    return lambda_env(table.name, dynamodb_endpoint)


@pytest.fixture
def fn(cold_start):
    """The authorizer function, cold-started: slot A active, and user 7 of
    tenant 1 controls the lamp. (Not `lam`: that is lambda_bridge's own.)"""
    started = cold_start()
    started.put_keyring()
    started.put_snapshot(principal="7", entries=[Entry(LAMP, snapshot.CONTROL)])
    return started


@pytest.fixture
def lamp_key(fn) -> compact_device.CompactKey:
    """A compact key published as slot A's compact half, and the lamp's own
    snapshot (it owns itself), for compact tokens at the unsigned authorizer."""
    key = compact_device.CompactKey()
    compact_device.publish(fn, key)
    compact_device.device_snapshot(fn)
    return key


@pytest.fixture
def recording(env) -> RecordingHandler:
    return RecordingHandler(build(env))


@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    return certs.ensure(tmp_path_factory.mktemp("certs"))


# --- the data plane ---------------------------------------------------------------------


@pytest.fixture
def authorizer(fn, env, recording):
    """The real gateway with the real handler (recording), as HTTPS publish meets it."""
    started = Gateway(lambda_env=env, authorizer_name="devshare", token_key_name=KEY_NAME, handler=recording)
    yield started
    started.close()


@pytest.fixture
def plane_server(serve, authorizer) -> BrokerServer:
    """The data plane in front of a broker; shadow timestamps are FROZEN_NOW."""
    return serve(shadows=Shadows(clock=lambda: FROZEN_NOW), authorizer=authorizer)


@pytest.fixture
def plane_watcher(gateway, client, plane_server) -> Client:
    """An MQTT 5 client of plane_server that receives every message, the
    shadows' included, retain flags as published (see broker_server.published)."""
    return _watching(gateway, client, plane_server.port, ("#", "$aws/things/#"), retain_as_published=True)


@pytest.fixture
def connect_app(gateway, client, plane_server):
    """connect_app(**Client options) → client `app-1` of plane_server, connected;
    it may leave a will on `wills/app-1`."""
    gateway.allow(b"app", document({"iot:Connect": ["app-1"], "iot:Publish": ["wills/app-1"]}))

    def connect(**options) -> Client:
        app = client("app-1", b"app", port=plane_server.port, **options)
        assert app.accepted
        return app

    return connect
