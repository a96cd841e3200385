"""Everything under /api/ answers in the one error body (issue 12, item 3):
paths no route matches, newlines included, and server errors; never Django's
HTML page. Outside /api/ Django's pages stay."""
import logging

import pytest
from rest_framework.test import APIClient

from devices import selectors
from tests.support.api import assert_error, url

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("path", [
    "/api/v1/foo%0Abar/",
    "/api/v1/%0A",
    "/api/v1/tenants/acme%0A/devices/",
    "/api/v1/me/%0A",
    "/api/nothing-here/",
    "/api/schema%0A/",
    "/api/",
])
def test_unknown_paths_under_api_are_json_404(world, client_for, path):
    response = client_for(world.owner).get(path)
    assert response["Content-Type"] == "application/json"
    assert assert_error(response, 404, "not_found")["detail"] == "No such API endpoint."


def test_a_server_error_under_api_is_json_and_still_logged(world, client_for, monkeypatch, caplog):
    def broken(user):
        raise RuntimeError("boom")

    monkeypatch.setattr(selectors, "tenants_for", broken)
    client = client_for(world.owner)
    client.raise_request_exception = False
    with caplog.at_level(logging.ERROR, logger="django.request"):
        response = client.get(url("tenant-list"))
    assert response["Content-Type"] == "application/json"
    body = assert_error(response, 500, "server_error")
    assert "boom" not in body["detail"]
    assert any(r.exc_info and "boom" in str(r.exc_info[1]) for r in caplog.records)


def test_a_server_error_under_api_is_json_for_anonymous_clients_too(monkeypatch):
    from devices.api import views

    def broken(self, request, *args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(views.LoginView, "post", broken)
    client = APIClient()
    client.raise_request_exception = False
    assert_error(client.post(url("token-obtain"), {"email": "a@b.test", "password": "x"}), 500, "server_error")


def test_outside_api_django_pages_stay(client):
    response = client.get("/no-such-page/")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")
