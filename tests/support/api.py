"""Addressing the API and checking its answers."""
from django.urls import reverse

from devices.errors import ErrorCode


def url(name: str, **kwargs) -> str:
    return reverse(f"api:{name}", kwargs=kwargs)


def tenant_url(name: str, world, **kwargs) -> str:
    return url(name, tenant=world.tenant.slug, **kwargs)


def issued_credentials(client, world, *, device=None, credential: str | None = None) -> dict:
    """IoT credentials from the API, as an app (or, with `device`, its owner
    for the device) gets them; `client` is signed in as the caller.
    `credential` asks for a kind ("signed" or "compact"; docs/credentials.md)."""
    path = (tenant_url("iot-credentials", world) if device is None
            else tenant_url("device-credentials", world, device=device.pk))
    response = client.post(path, {} if credential is None else {"credential": credential}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def assert_error(response, status: int, code: str | None = None, *, registry_code: ErrorCode | None = None) -> dict:
    """Every error has the one shape; returns the body. `code` is the body's
    `error`; `registry_code` its `code`, which a service's refusal takes from
    devices/errors.py and every other error copies from `error`."""
    assert response.status_code == status, (response.status_code, response.content[:500])
    body = response.json()
    assert set(body) == {"error", "code", "detail", "fields"}, body
    assert isinstance(body["detail"], str) and body["detail"]
    assert isinstance(body["fields"], dict)
    assert body["code"] == body["error"] or body["code"] in set(ErrorCode), body
    if code is not None:
        assert body["error"] == code, body
    if registry_code is not None:
        assert body["code"] == registry_code.value, body
    return body


def rates(settings, **scopes):
    """Set throttle rates per scope (e.g. `auth="3/minute"`) through pytest-django's `settings`."""
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], **scopes},
    }
