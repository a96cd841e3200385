"""Audit actions are one registry (devices/audit_actions.py): every action the
code records is in it, nothing in it goes unused, and recording anything else
fails before a row is written."""
import ast
import re

import pytest

from devices import audit
from devices.audit_actions import KNOWN, Action
from devices.models import AuditEvent
from tests.support.paths import ROOT

PRODUCT = ("devices", "authz", "config", "lambda_bridge")


def _module_constants(tree: ast.Module) -> dict[str, str]:
    return {target.id: node.value.value for node in tree.body if isinstance(node, ast.Assign)
            for target in node.targets if isinstance(target, ast.Name)
            and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)}


def _spellings(node: ast.AST, constants: dict[str, str]):
    """What an `action=` argument can be: ("exact", text) or ("pattern", regex) for an f-string."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        yield "exact", node.value
    elif isinstance(node, ast.IfExp):
        yield from _spellings(node.body, constants)
        yield from _spellings(node.orelse, constants)
    elif isinstance(node, ast.Name) and node.id in constants:
        yield "exact", constants[node.id]
    elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "Action":
        yield "exact", Action[node.attr].value
    elif isinstance(node, ast.JoinedStr):
        parts = [re.escape(p.value) if isinstance(p, ast.Constant) else "[a-z_]+" for p in node.values]
        yield "pattern", "".join(parts)
    else:
        raise AssertionError(f"cannot tell which action {ast.unparse(node)!r} records")


def recorded_actions(source: str) -> list[tuple[str, str]]:
    tree = ast.parse(source)
    constants = _module_constants(tree)
    found = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr in {"record", "build"} and getattr(node.func.value, "id", None) == "audit"):
            (action,) = [k.value for k in node.keywords if k.arg == "action"]
            found += _spellings(action, constants)
    return found


def product_actions() -> list[tuple[str, str]]:
    found = []
    for package in PRODUCT:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" not in path.parts:
                found += recorded_actions(path.read_text())
    return found


def test_every_recorded_action_is_registered_and_every_registered_one_is_recorded():
    found = product_actions()
    exact = {text for kind, text in found if kind == "exact"}
    patterns = {text for kind, text in found if kind == "pattern"}
    assert len(exact) > 20 and patterns  # the scan sees the call sites
    assert exact - KNOWN == set()
    assert {p for p in patterns if not any(re.fullmatch(p, a) for a in KNOWN)} == set()
    unused = {a for a in KNOWN if a not in exact and not any(re.fullmatch(p, a) for p in patterns)}
    assert unused == set()


def test_the_scan_reads_each_way_an_action_is_written():
    source = (
        'GONE = "thing.gone"\n'
        'audit.record(actor=a, action="share.create", obj=o)\n'
        'audit.build(actor=a, action="user.activate" if x else "user.deactivate", obj=o)\n'
        'audit.record(actor=a, action=GONE, obj=o)\n'
        'audit.record(actor=a, action=f"invitation.{status.label}", obj=o)\n'
        'audit.record(actor=a, action=Action.SHARE_REVOKE, obj=o)\n'
        'record(actor=a, action="not.audit", obj=o)\n'
    )
    assert recorded_actions(source) == [
        ("exact", "share.create"), ("exact", "user.activate"), ("exact", "user.deactivate"),
        ("exact", "thing.gone"), ("pattern", r"invitation\.[a-z_]+"), ("exact", "share.revoke"),
    ]


def test_the_closing_actions_of_an_invitation_and_the_signing_steps_are_registered():
    from authz.tokens import rotation
    from devices.models import Invitation

    closed = {f"invitation.{s.label}" for s in Invitation.Status if s != Invitation.Status.PENDING}
    steps = {f"signing_key.{step}" for step in (rotation.BOOTSTRAP, rotation.STAGE, rotation.PROMOTE, rotation.RETIRE)}
    assert closed | steps <= KNOWN


def test_the_event_field_offers_the_registry():
    assert AuditEvent._meta.get_field("action").choices == Action.choices


@pytest.mark.django_db
def test_recording_an_unknown_action_raises_and_writes_nothing(world):
    with pytest.raises(ValueError, match="share.destroy"):
        audit.record(actor=world.owner, action="share.destroy", obj=world.lamp)
    with pytest.raises(ValueError):
        audit.build(actor=world.owner, action="", obj=world.lamp)
    assert not AuditEvent.objects.filter(action__in=["share.destroy", ""]).exists()
    assert audit.record(actor=world.owner, action=Action.DEVICE_RENAME, obj=world.lamp).action == "device.rename"
