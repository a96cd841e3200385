"""Fixtures every test package may use, defined once: a tenant world, the
session's moto DynamoDB, a snapshot table, API clients with fresh throttle
counters, and the cold-started authorizer. Helpers are in tests/support/;
a package's conftest holds only the fixtures of that package."""
import uuid

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from django.core.cache import cache
from rest_framework.test import APIClient

from tests.support.authorizer import Lambda
from tests.support.lambda_env import SigningKey, lambda_env
from tests.support.snapshot_table import SnapshotTable
from tests.support.world import World


@pytest.fixture
def world(db):
    return World("acme")


@pytest.fixture
def other(db):
    return World("globex")


# --- DynamoDB -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def moto_endpoint():
    """One moto DynamoDB server for the session, reached over HTTP like AWS."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(autouse=True)
def dynamodb_endpoint(moto_endpoint, settings):
    """Every test talks to the session's moto server, never to AWS."""
    from authz.snapshots import store

    settings.DYNAMODB_ENDPOINT_URL = moto_endpoint
    store.client.cache_clear()
    yield moto_endpoint
    store.client.cache_clear()


@pytest.fixture
def table(settings, request):
    """A fresh snapshot table for this test; returns a reader of its items."""
    from authz.snapshots import store

    name = settings.DYNAMODB_TABLE = f"t-{uuid.uuid4().hex[:12]}"
    store.ensure_table()
    yield SnapshotTable(name)
    store.client().delete_table(TableName=name)


# --- the API --------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def fresh_throttles():
    """Throttle counters (and the anti-entropy cursor) live in the cache; each test starts with none."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def client_for():
    """An API client signed in as `user` (None: anonymous)."""

    def make(user=None) -> APIClient:
        client = APIClient()
        if user is not None:
            client.force_authenticate(user)
        return client

    return make


# --- the authorizer -------------------------------------------------------------------


@pytest.fixture(scope="session")
def signing_keys() -> dict[str, SigningKey]:
    return {name: SigningKey(f"kid-{name}-{uuid.uuid4().hex[:8]}",
                             rsa.generate_private_key(public_exponent=65537, key_size=2048))
            for name in ("a", "b", "stranger")}


@pytest.fixture
def cold_start(table, dynamodb_endpoint, signing_keys, capsys):
    """cold_start(**env overrides) → a handler built as AWS would start it, from
    exactly that environment."""
    from lambda_bridge.handler import build

    def start(**overrides) -> Lambda:
        return Lambda(build(lambda_env(table.name, dynamodb_endpoint, **overrides)), table, signing_keys, capsys)

    return start
