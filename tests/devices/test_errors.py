"""The registry of refusals (devices/errors.py) and the services' use of it."""
import ast
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError

from devices import services
from devices.errors import DomainError, ErrorCode, Kind
from devices.models import Membership

SERVICES = Path(services.__file__).parent


def test_every_code_is_unique_and_has_a_kind():
    values = [code.value for code in ErrorCode]
    assert len(values) == len(set(values))
    assert all(isinstance(code.kind, Kind) for code in ErrorCode)
    assert {code.kind for code in ErrorCode} == set(Kind)


def test_a_domain_error_is_a_validation_error_the_console_can_show():
    error = DomainError(ErrorCode.SHARE_EXISTS, "Already shared.", field="grantee")
    assert isinstance(error, ValidationError)
    assert error.message_dict == {"grantee": ["Already shared."]}
    assert (error.code, error.kind, error.field) == (ErrorCode.SHARE_EXISTS, Kind.CONFLICT, "grantee")
    assert DomainError(ErrorCode.LAST_OWNER, "Keep one.").messages == ["Keep one."]


def test_services_raise_no_uncoded_validation_error():
    for path in SERVICES.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
                assert getattr(node.exc.func, "id", None) != "ValidationError", f"{path.name}:{node.lineno}"


@pytest.fixture
def superuser(django_user_model):
    return django_user_model.objects.create_superuser(email="root@example.test", password="pw")


def refused_with(code: ErrorCode, call, **kwargs):
    with pytest.raises(DomainError) as caught:
        call(**kwargs)
    assert caught.value.code is code
    return caught.value


def test_console_only_clashes_carry_their_codes(world, superuser):
    refused_with(ErrorCode.ALREADY_MEMBER, services.add_member, actor=superuser, tenant=world.tenant, user=world.alice)
    refused_with(ErrorCode.ACCOUNT_EXISTS, services.create_user, actor=superuser, email=world.alice.email,
                 password=None)
    refused_with(ErrorCode.STILL_OWNS, services.remove_member, actor=superuser,
                 membership=Membership.objects.get(user=world.owner, tenant=world.tenant))
    refused_with(ErrorCode.DEVICE_TYPE_IN_USE, services.delete_device_type, actor=superuser, device_type=world.type)
    only_owner = services.add_member(actor=superuser, tenant=world.tenant, user=superuser, role=Membership.Role.OWNER)
    refused_with(ErrorCode.LAST_OWNER, services.remove_member, actor=superuser, membership=only_owner)
    assert all(code.kind == Kind.CONFLICT for code in (ErrorCode.ALREADY_MEMBER, ErrorCode.LAST_OWNER))


def test_the_api_guide_lists_every_code_under_its_status():
    """docs/api.md's table of domain codes is what clients read; it must not drift."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "api.md").read_text()
    section = text.split("### Domain codes", 1)[1].split("\n## ", 1)[0]
    listed = {}
    for status, codes in re.findall(r"^\| (\d{3}) \| `\w+` \| (.+) \|$", section, re.M):
        for code in re.findall(r"`(\w+)`", codes):
            listed[code] = int(status)
    assert listed == {code.value: {Kind.INVALID: 400, Kind.CONFLICT: 409}[code.kind] for code in ErrorCode}
