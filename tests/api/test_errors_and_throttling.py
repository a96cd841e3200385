"""One error body for every failure, and throttles that can be exercised on demand."""
import pytest
from rest_framework.test import APIClient

from devices.models import Level, Share, User
from tests.support.api import assert_error, rates, tenant_url, url

pytestmark = pytest.mark.django_db


class TestShape:
    def test_service_validation_error_maps_to_400_with_fields(self, world, client_for):
        client = client_for(world.owner)
        client.post(tenant_url("device-shares", world, device=world.lock.pk),
                    {"grantee": world.alice.email, "level": "view"})
        share = Share.objects.get(grantee=world.alice)
        response = client.patch(tenant_url("share-detail", world, pk=share.pk),
                                {"level": "control", "can_reshare": True})
        body = assert_error(response, 400, "invalid")
        assert body["fields"] == {"can_reshare": ["Only a manage share may allow re-sharing."]}
        assert body["detail"].startswith("can_reshare:")

    def test_service_permission_denied_maps_to_403_with_its_reason(self, world, client_for):
        Share.objects.create(tenant=world.tenant, device=world.lock, grantee=world.alice, created_by=world.owner,
                             level=Level.VIEW)
        response = client_for(world.alice).delete(tenant_url("device-detail", world, pk=world.lock.pk))
        body = assert_error(response, 403, "permission_denied")
        assert "owner or a tenant admin" in body["detail"]

    def test_unknown_object_and_unknown_path_are_json_404(self, world, client_for):
        client = client_for(world.owner)
        assert_error(client.get(tenant_url("device-detail", world, pk=999999)), 404, "not_found")
        assert_error(client.get("/api/v1/no/such/thing/"), 404, "not_found")
        assert_error(APIClient().post("/api/v1/tenants"), 404, "not_found")

    def test_malformed_json_is_400(self, world, client_for):
        response = client_for(world.owner).generic("POST", tenant_url("group-list", world), "{nope",
                                                  content_type="application/json")
        assert_error(response, 400, "parse_error")

    def test_wrong_method_is_405(self, world, client_for):
        assert_error(client_for(world.owner).delete(url("me")), 405, "method_not_allowed")

    def test_page_past_the_end_is_404(self, world, client_for):
        assert_error(client_for(world.owner).get(tenant_url("device-list", world), {"page": 99}), 404, "not_found")


class TestThrottling:
    def test_login_attempts_are_limited(self, settings, db):
        rates(settings, auth="3/minute")
        User.objects.create_user(email="pat@example.test", password="pw")
        client = APIClient()
        codes = [client.post(url("token-obtain"), {"email": "pat@example.test", "password": "bad"}).status_code
                 for _ in range(4)]
        assert codes == [401, 401, 401, 429]
        response = client.post(url("token-obtain"), {"email": "pat@example.test", "password": "pw"})
        body = assert_error(response, 429, "throttled")
        assert int(response["Retry-After"]) > 0 and "available in" in body["detail"]

    def test_share_writes_are_limited_per_user_and_reads_are_not(self, settings, world, client_for):
        rates(settings, shares="2/minute")
        owner = client_for(world.owner)
        target = tenant_url("device-shares", world, device=world.lock.pk)
        for grantee in (world.alice, world.bob):
            assert owner.post(target, {"grantee": grantee.email, "level": "view"}).status_code == 201
        assert_error(owner.post(target, {"grantee": world.carol.email, "level": "view"}), 429, "throttled")
        assert not Share.objects.filter(grantee=world.carol).exists()
        assert all(owner.get(target).status_code == 200 for _ in range(3))
        # Another user has a bucket of their own.
        admin = client_for(world.admin)
        assert admin.post(target, {"grantee": world.carol.email, "level": "view"}).status_code == 201

    def test_default_rates_come_from_the_environment(self):
        import subprocess
        import sys

        code = ("import django, os; django.setup(); from django.conf import settings; "
                "print(settings.REST_FRAMEWORK['DEFAULT_THROTTLE_RATES'])")
        env = {"DJANGO_SETTINGS_MODULE": "config.settings.test", "API_THROTTLE_AUTH": "7/hour",
               "PATH": "/usr/bin:/bin"}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True,
                             cwd=__file__.rsplit("/tests/", 1)[0])
        assert "'auth': '7/hour'" in out.stdout
