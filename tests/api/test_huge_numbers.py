"""Numbers no id column can hold (issue 12, item 7): 400 in the error shape,
not an OverflowError (500) on SQLite. CI runs this on SQLite as well as on
PostgreSQL (.ci/run)."""
import pytest

from tests.support.api import assert_error, tenant_url

pytestmark = pytest.mark.django_db

HUGE = ["9223372036854775808", "99999999999999999999", "1e26", "-1.0681698362630613e+251", "1.5", "0", "-3"]
FILTERS = [("device-list", "group"), ("share-list", "device"), ("share-list", "group")]


@pytest.mark.parametrize("value", HUGE)
@pytest.mark.parametrize(("route", "param"), FILTERS)
def test_id_filters_refuse_what_no_id_can_be(world, client_for, route, param, value):
    response = client_for(world.owner).get(tenant_url(route, world), {param: value})
    assert param in assert_error(response, 400, "invalid")["fields"]


@pytest.mark.parametrize(("route", "param"), FILTERS)
def test_id_filters_still_filter(world, client_for, route, param):
    from devices import services
    from devices.models import Level

    services.create_share(actor=world.owner, grantee=world.alice, device=world.lamp, level=Level.VIEW)
    services.create_share(actor=world.owner, grantee=world.alice, group=world.group, level=Level.VIEW)
    target = world.lamp if param == "device" else world.group
    viewer = world.alice if route == "share-list" else world.owner
    rows = client_for(viewer).get(tenant_url(route, world), {param: target.pk}).json()["results"]
    assert rows and {row[param] for row in rows} == {target.pk}
    # The largest id there can be is fine, and matches nothing.
    assert client_for(viewer).get(tenant_url(route, world), {param: "9223372036854775807"}).json()["results"] == []


@pytest.mark.parametrize("path", ["devices/{n}/", "devices/{n}/shares/", "shares/{n}/", "groups/{n}/",
                                  "devices/{n}/access/", "devices/{n}/audit/"])
def test_huge_ids_in_paths_are_404(world, client_for, path):
    response = client_for(world.owner).get(f"/api/v1/tenants/{world.tenant.slug}/{path.format(n=10**30)}")
    assert_error(response, 404, "not_found")


@pytest.mark.parametrize(("route", "body"), [
    ("group-devices", lambda world: {"device": 10**30}),
    ("device-list", lambda world: {"name": "x", "device_type": world.type.slug, "group": 10**30}),
])
def test_huge_ids_in_bodies_are_400(world, client_for, route, body):
    kwargs = {"group": world.group.pk} if route == "group-devices" else {}
    response = client_for(world.owner).post(tenant_url(route, world, **kwargs), body(world), format="json")
    assert_error(response, 400, "invalid")
