"""The OpenAPI document: valid, complete about errors, and true to the API
(schemathesis fuzzes every operation against it)."""
import re

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.validation import validate_schema
from hypothesis import HealthCheck, settings
from rest_framework_simplejwt.tokens import AccessToken
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from authz.tokens import iot, rotation
from config.wsgi import application
from devices import services
from devices.models import Level
from tests.support.lambda_env import lambda_env
from tests.support.local_iot import RunningLocalIot
from tests.support.world import World

ERROR_REF = "#/components/schemas/Error"


@pytest.fixture(scope="module")
def document():
    document = SchemaGenerator().get_schema(request=None, public=True)
    validate_schema(document)
    return document


def operations(document):
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in {"get", "post", "put", "patch", "delete"}:
                yield path, method, operation


def test_every_operation_documents_its_errors_with_the_error_body(document):
    for path, method, operation in operations(document):
        responses = operation["responses"]
        errors = {code for code in responses if code.startswith("4")}
        where = f"{method.upper()} {path}"
        assert "401" in errors, where
        if "{tenant}" in path or "{id}" in path:
            assert "404" in errors, where
        if method in {"post", "patch"}:
            assert "400" in errors, where
        for code in errors:
            ref = responses[code]["content"]["application/json"]["schema"]["$ref"]
            assert ref == ERROR_REF, (where, code)


def test_throttled_and_conflicting_operations_say_so(document):
    ops = {(method, path): op for path, method, op in operations(document)}
    for key in [("post", "/api/v1/auth/token/"), ("post", "/api/v1/tenants/{tenant}/devices/{device}/shares/"),
                ("post", "/api/v1/tenants/{tenant}/shares/{id}/revoke/")]:
        assert "429" in ops[key]["responses"], key
    shares = ops[("post", "/api/v1/tenants/{tenant}/devices/{device}/shares/")]
    assert {"200", "201", "202", "409"} <= set(shares["responses"])
    assert "403" in ops[("get", "/api/v1/tenants/{tenant}/devices/{device}/audit/")]["responses"]


def test_schedules_and_the_access_preview_are_described(document):
    """docs/api.md#weekly-schedules: the form, on shares and invitations, read and written."""
    schemas = document["components"]["schemas"]
    assert set(schemas["Schedule"]["required"]) == {"timezone", "windows"}
    assert schemas["Schedule"]["properties"]["windows"]["maxItems"] == 14
    for name in ("Share", "Invitation", "ShareCreateRequest", "PatchedShareUpdateRequest", "Access", "AccessEntry"):
        field = schemas[name]["properties"]["schedule"]
        assert field["nullable"] and field["allOf"][0]["$ref"].split("/")[-1] in {"Schedule", "ScheduleRequest"}, name
    assert {"in_force", "next_change"} <= set(schemas["Access"]["properties"])
    assert "in_force" in schemas["AccessEntry"]["required"]
    access = document["paths"]["/api/v1/tenants/{tenant}/devices/{device}/access/"]["get"]
    (at,) = [p for p in access["parameters"] if p["name"] == "at"]
    assert (at["in"], at["schema"]["format"], at.get("required", False)) == ("query", "date-time", False)
    assert "400" in access["responses"]


def test_schema_and_docs_are_served(client):
    assert client.get("/api/schema/?format=json").json()["info"]["title"] == "Devshare API"
    docs = client.get("/api/docs/")
    assert docs.status_code == 200 and b"swagger" in docs.content.lower()


# --- schemathesis --------------------------------------------------------------------

schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", application)


@pytest.fixture
def wsgi_in_test_transaction():
    """Like Django's test client: the WSGI handler must not close the connection
    that holds the test's transaction at the end of each request."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def data_plane(settings, table, dynamodb_endpoint, tmp_path):
    """A whole local AWS IoT Core, so that the live-sessions endpoints ask a
    real data plane (docs/api.md#live-sessions) rather than answer 503."""
    with RunningLocalIot(lambda_env(table.name, dynamodb_endpoint), cert_dir=tmp_path / "certs",
                         access_key_id=settings.AWS_ACCESS_KEY_ID) as running:
        settings.IOT_DATA_ENDPOINT_URL = f"http://127.0.0.1:{running.http_port}"
        iot.gateway.cache_clear()
        yield running
    iot.gateway.cache_clear()


@pytest.fixture
def seeded(db, settings, wsgi_in_test_transaction, table, data_plane):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {
        "auth": "100000/minute", "shares": "100000/minute", "iot_credentials": "100000/minute"}}
    rotation.rotate(actor=None)  # so that credentials can be issued
    world = World("acme")
    share = services.create_share(actor=world.owner, grantee=world.alice, device=world.lock, level=Level.VIEW)
    invitation = services.create_invitation(actor=world.admin, email=world.owner.email.replace("owner", "owner2"),
                                            device=world.lamp, level=Level.VIEW)
    world.ids = {"devices": world.lock.pk, "groups": world.group.pk, "shares": share.pk,
                 "invitations": invitation.pk}
    world.token = str(AccessToken.for_user(world.owner))
    return world


def aim(case, world):
    """Point path parameters at real objects so requests get past the 404s."""
    for name in list(case.path_parameters or {}):
        if name == "tenant":
            case.path_parameters[name] = world.tenant.slug
            continue
        collection = re.search(rf"/([a-z-]+)/\{{{name}\}}", case.path)
        key = "devices" if name == "device" else "groups" if name == "group" else collection and collection.group(1)
        if key in world.ids:
            case.path_parameters[name] = world.ids[key]


@schema.parametrize()
@settings(max_examples=8, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.filter_too_much])
def test_api_conforms_to_its_schema(case, seeded):
    aim(case, seeded)
    case.call_and_validate(
        headers={"Authorization": f"Bearer {seeded.token}"},
        checks=[not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance],
    )
