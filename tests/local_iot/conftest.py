"""Fixtures of the local_iot tests: a broker on loopback with a policy
gateway, and real paho-mqtt clients that are closed after each test."""
import pytest

from tests.support.broker_server import BrokerServer
from tests.support.mqtt_client import Client
from tests.support.policy_gateway import PolicyGateway


@pytest.fixture
def gateway() -> PolicyGateway:
    return PolicyGateway()


@pytest.fixture
def serve(gateway):
    """serve(time_scale=…) → a running BrokerServer (one per test)."""
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
def client(server):
    """client(client_id, password, version=…, connect=True, port=…, **options) → a paho Client."""
    made = []

    def make(client_id: str, password: bytes | None = b"pw", *, connect: bool = True, port: int | None = None,
             **options) -> Client:
        made.append(Client(port or server.port, client_id, password, **options))
        return made[-1].connect() if connect else made[-1]

    yield make
    for one in made:
        one.close()


@pytest.fixture(params=[4, 5], ids=["mqtt311", "mqtt5"])
def version(request) -> int:
    return request.param
