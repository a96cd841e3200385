"""Sign-in with JWTs: login, rotation, logout, and what stops a token."""
import pytest
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken

from devices.models import User
from tests.support.api import assert_error, url

pytestmark = pytest.mark.django_db


@pytest.fixture
def person(db):
    return User.objects.create_user(email="pat@example.test", password="correct horse")


def login(email="pat@example.test", password="correct horse"):
    return APIClient().post(url("token-obtain"), {"email": email, "password": password})


def bearer(token) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def test_login_with_any_case_of_email_and_use_the_access_token(person):
    response = login(email="  PAT@Example.test ")
    assert response.status_code == 200, response.content
    tokens = response.json()
    me = bearer(tokens["access"]).get(url("me"))
    assert me.status_code == 200 and me.json()["email"] == "pat@example.test"


def test_wrong_password_is_401_in_the_error_shape(person):
    body = assert_error(login(password="nope"), 401, "no_active_account")
    assert body["fields"] == {}


def test_missing_fields_are_400(person):
    response = APIClient().post(url("token-obtain"), {"email": "pat@example.test"})
    assert "password" in assert_error(response, 400, "invalid")["fields"]


def test_refresh_rotates_and_the_old_refresh_token_stops_working(person):
    first = login().json()
    rotated = APIClient().post(url("token-refresh"), {"refresh": first["refresh"]})
    assert rotated.status_code == 200
    second = rotated.json()
    assert second["refresh"] != first["refresh"]
    assert bearer(second["access"]).get(url("me")).status_code == 200
    assert_error(APIClient().post(url("token-refresh"), {"refresh": first["refresh"]}), 401, "token_not_valid")


def test_logout_blacklists_the_refresh_token(person):
    tokens = login().json()
    assert APIClient().post(url("logout"), {"refresh": tokens["refresh"]}).status_code == 204
    assert_error(APIClient().post(url("token-refresh"), {"refresh": tokens["refresh"]}), 401, "token_not_valid")


def test_garbage_token_is_401(person):
    response = bearer("not.a.jwt").get(url("me"))
    assert_error(response, 401, "token_not_valid")
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_no_credentials_is_401_with_challenge():
    response = APIClient().get(url("me"))
    assert_error(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_deactivated_account_can_neither_sign_in_nor_use_its_tokens(person):
    tokens = login().json()
    User.objects.filter(pk=person.pk).update(is_active=False)
    assert_error(login(), 401)
    assert_error(bearer(tokens["access"]).get(url("me")), 401)
    assert_error(APIClient().post(url("token-refresh"), {"refresh": tokens["refresh"]}), 401)


def test_password_change_ends_existing_tokens(person):
    tokens = login().json()
    person.set_password("another battery staple")
    person.save()
    assert_error(bearer(tokens["access"]).get(url("me")), 401)


def test_session_login_works_for_the_browsable_api(person, client):
    client.force_login(person)
    assert client.get(url("me"), HTTP_ACCEPT="application/json").json()["email"] == person.email


def test_me_lists_memberships(world):
    body = bearer(str(AccessToken.for_user(world.admin))).get(url("me")).json()
    assert [(m["tenant"]["slug"], m["role"]) for m in body["memberships"]] == [("acme", "admin")]
