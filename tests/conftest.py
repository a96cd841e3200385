import os

import pytest

from devices.models import Membership
from tests.factories import DeviceFactory, DeviceGroupFactory, DeviceTypeFactory, TenantFactory, member

IN_CI = os.environ.get("CI", "").lower() == "true"


def require(available: bool, what: str) -> None:
    """In CI a missing service fails the run; elsewhere the test is skipped, saying why."""
    if available:
        return
    if IN_CI:
        pytest.fail(f"{what} is required in CI but is not available")
    pytest.skip(f"{what} is not available on this machine")


class World:
    """One tenant with an owner, an admin, members, a group and devices."""

    def __init__(self, slug: str):
        self.tenant = TenantFactory(slug=slug, name=slug.title())
        self.admin = member(self.tenant, Membership.Role.ADMIN, email=f"admin@{slug}.test", is_staff=True)
        self.owner = member(self.tenant, email=f"owner@{slug}.test")
        self.alice = member(self.tenant, email=f"alice@{slug}.test")
        self.bob = member(self.tenant, email=f"bob@{slug}.test")
        self.carol = member(self.tenant, email=f"carol@{slug}.test")
        self.type = DeviceTypeFactory(tenant=self.tenant)
        self.group = DeviceGroupFactory(tenant=self.tenant, owner=self.owner, name="Home")
        self.lamp = DeviceFactory(tenant=self.tenant, owner=self.owner, device_type=self.type, group=self.group, name="Lamp")
        self.lock = DeviceFactory(tenant=self.tenant, owner=self.owner, device_type=self.type, name="Lock")


@pytest.fixture
def world(db):
    return World("acme")


@pytest.fixture
def other(db):
    return World("globex")


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
    import uuid

    from authz.snapshots import store

    name = settings.DYNAMODB_TABLE = f"t-{uuid.uuid4().hex[:12]}"
    store.ensure_table()
    yield SnapshotTable(name)
    store.client().delete_table(TableName=name)


class SnapshotTable:
    def __init__(self, name: str):
        self.name = name

    def items(self) -> dict[str, dict]:
        from authz.snapshots import store

        pages = store.client().get_paginator("scan").paginate(TableName=self.name, ConsistentRead=True)
        return {item["pk"]["S"]: item for page in pages for item in page["Items"]}

    def snapshots(self) -> dict:
        from lambda_bridge.snapshot import from_item

        return {key: from_item(item) for key, item in self.items().items()}

    def snapshot(self, key: str):
        return self.snapshots().get(key)
