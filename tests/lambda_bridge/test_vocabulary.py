"""lambda_bridge/vocabulary.py is the one spelling of levels, name patterns
and refusal reasons: the Lambda's modules use it, no reason is spelled as a
literal, and the documented reason table lists exactly the reasons."""
import ast
import re

import pytest

from lambda_bridge import config, policy, snapshot, tokens, vocabulary
from lambda_bridge.vocabulary import REFUSAL_REASONS, SETUP_REASONS, Reason
from tests.support.paths import ROOT

# The document whose table lists the authorizer's refusal reasons.
REASON_TABLE_DOC = ROOT / "docs" / "authorizer.md"
PACKAGE = ROOT / "lambda_bridge"


def test_snapshot_level_codes_are_the_vocabulary():
    assert [snapshot.LEVEL_NAMES[code] for code in sorted(snapshot.LEVEL_NAMES)] == list(vocabulary.LEVELS)
    assert (snapshot.VIEW, snapshot.CONTROL, snapshot.MANAGE, snapshot.OWNER) == (1, 2, 3, 4)
    assert vocabulary.SHARE_LEVELS == vocabulary.LEVELS[:3] and vocabulary.OWNER not in vocabulary.SHARE_LEVELS


def test_modules_compile_the_vocabulary_patterns():
    assert tokens.NAME.pattern == policy._THING.pattern == vocabulary.THING_NAME
    assert policy._CLIENT_ID.pattern == vocabulary.CLIENT_ID


@pytest.mark.parametrize("name, ok", [
    ("d-abc23", True), ("a" * 128, True), ("a:b_c-D9", True),
    ("", False), ("a" * 129, False), ("lamp*", False), ("lamp?", False), ("$aws", False), ("u1.2.app", False),
    ("lamp\n", False), ("lämp", False),
])
def test_thing_name_pattern(name, ok):
    assert bool(re.fullmatch(vocabulary.THING_NAME, name)) is ok
    assert (policy._THING.fullmatch(name) is not None) is ok


def test_token_key_name_setting_uses_the_vocabulary():
    env = {"DEVSHARE_TABLE": "t", "DEVSHARE_TOKEN_ISSUER": "i", "DEVSHARE_TOKEN_AUDIENCE": "a",
           "DEVSHARE_AWS_ACCOUNT_ID": "123456789012", "AWS_REGION": "eu-west-1"}
    assert config.Config.from_env({**env, "DEVSHARE_TOKEN_KEY_NAME": "x" * 128}).token_key_name == "x" * 128
    for bad in ("x" * 129, "with space", "dot.ted"):
        assert not re.fullmatch(vocabulary.TOKEN_KEY_NAME, bad)
        with pytest.raises(config.ConfigError):
            config.Config.from_env({**env, "DEVSHARE_TOKEN_KEY_NAME": bad})


def test_reason_constants_are_their_own_names():
    names = {name: value for name, value in vars(Reason).items() if name.isupper()}
    assert all(value == name.lower() for name, value in names.items())
    assert REFUSAL_REASONS == set(names.values()) - {Reason.OK}
    assert SETUP_REASONS < REFUSAL_REASONS


def _reason_arguments(tree: ast.AST):
    """The reason given to every Refused(...) and Decision(reason=...) call, and
    every value assigned to a `reason` or `.reason`."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) in {"Refused", "Decision"}:
            if node.func.id == "Refused" and node.args:
                yield node.args[0]
            yield from (k.value for k in node.keywords if k.arg == "reason")


def _literals(node: ast.AST):
    """The string literals a reason expression can evaluate to."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        yield node.value
    elif isinstance(node, ast.IfExp):
        yield from _literals(node.body)
        yield from _literals(node.orelse)
    elif isinstance(node, ast.JoinedStr):
        yield ast.unparse(node)


def test_no_reason_is_spelled_as_a_literal_in_the_lambda():
    found, literals = 0, {}
    for path in sorted(PACKAGE.glob("*.py")):
        if path.name == "vocabulary.py":
            continue
        for argument in _reason_arguments(ast.parse(path.read_text())):
            found += 1
            if list(_literals(argument)):
                literals.setdefault(path.name, []).append(ast.unparse(argument))
    assert found > 40  # the scan sees the refusals (tokens.py alone raises dozens)
    assert literals == {}


def test_the_scan_sees_a_literal_reason():
    tree = ast.parse('raise Refused("no_token")\nDecision(allowed=False, reason="x" if "y" in a else Reason.OK)\n'
                     'raise Refused(Reason.NO_TOKEN if a else Reason.BAD_EVENT, "detail")')
    assert [list(_literals(a)) for a in _reason_arguments(tree)] == [["no_token"], ["x"], []]


def documented_reasons(text: str) -> set[str]:
    """The backticked names in the second column of the `| area | reasons |` table."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if re.fullmatch(r"\s*\|\s*area\s*\|\s*reasons\s*\|\s*", line))
    reasons = set()
    for line in lines[start + 2:]:
        cells = line.strip().split("|")
        if not line.strip().startswith("|") or len(cells) < 4:
            break
        reasons |= set(re.findall(r"`([a-z_]+)`", cells[2]))
    return reasons


def test_the_reason_table_lists_exactly_the_refusal_reasons():
    assert documented_reasons(REASON_TABLE_DOC.read_text()) == REFUSAL_REASONS


def test_the_table_parser_reads_rows_until_the_table_ends():
    text = "x\n| area | reasons |\n|---|---|\n| a | `no_token`, `bad_event` (why) |\n| b | `expired` |\n\n| `ok` |\n"
    assert documented_reasons(text) == {"no_token", "bad_event", "expired"}
