"""The policy evaluator: the yardstick other tests use to prove what a generated
policy grants, so it is itself checked against the AWS rules and, for the glob,
against an independent reference matcher."""
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lambda_bridge import evaluator
from lambda_bridge.evaluator import RESOURCE_TYPES, Connection, PolicyError, allows, arn, evaluate

REGION, ACCOUNT = "us-east-1", "123456789012"
PREFIX = f"arn:aws:iot:{REGION}:{ACCOUNT}:"


def stmt(effect: str, action, resource) -> dict:
    return {"Effect": effect, "Action": action, "Resource": resource}


def doc(*statements: dict) -> dict:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def allow(action, resource) -> dict:
    return doc(stmt("Allow", action, resource))


def deny(action, resource) -> dict:
    return doc(stmt("Deny", action, resource))


def reference_glob(pattern: str, text: str) -> bool:
    """Bottom-up DP, deliberately unlike the module's chunk scan: ok[i][j] says
    whether pattern[i:] matches text[j:]."""
    n, m = len(pattern), len(text)
    ok = [[False] * (m + 1) for _ in range(n + 1)]
    ok[n][m] = True
    for i in range(n - 1, -1, -1):
        for j in range(m, -1, -1):
            if pattern[i] == "*":
                ok[i][j] = ok[i + 1][j] or (j < m and ok[i][j + 1])
            else:
                ok[i][j] = j < m and pattern[i] in ("?", text[j]) and ok[i + 1][j + 1]
    return ok[0][0]


# --- the ARN scheme -------------------------------------------------------------

def test_arn_builds_the_iot_resource_arn():
    assert arn("eu-west-1", "111122223333", "topicfilter", "dev/X/out/#") == (
        "arn:aws:iot:eu-west-1:111122223333:topicfilter/dev/X/out/#")


def test_resource_types_follow_the_aws_action_resource_table():
    assert RESOURCE_TYPES == {
        "iot:Connect": "client", "iot:Publish": "topic", "iot:RetainPublish": "topic", "iot:Receive": "topic",
        "iot:Subscribe": "topicfilter", "iot:GetThingShadow": "thing", "iot:UpdateThingShadow": "thing",
        "iot:DeleteThingShadow": "thing",
    }


# --- resource matching ------------------------------------------------------------

RESOURCE_CASES = [
    # MQTT wildcards are literal characters in a policy; only * and ? are wildcards.
    ("topicfilter/dev/X/out/*", "topicfilter/dev/X/out/#", True),
    ("topicfilter/dev/X/out/*", "topicfilter/dev/+/out/#", False),
    ("topicfilter/dev/+/out/#", "topicfilter/dev/+/out/#", True),
    ("topicfilter/dev/+/out/#", "topicfilter/dev/X/out/#", False),
    ("topicfilter/dev/+/out/#", "topicfilter/dev/X/out/a", False),
    ("topicfilter/dev/X/#", "topicfilter/dev/X/out/a", False),
    # * may be empty and crosses / and :
    ("topic/dev/X/out/*", "topic/dev/X/out/", True),
    ("topic/dev/*", "topic/dev/a/b/c", True),
    ("topic/dev/*/z", "topic/dev/a:b/c:d/z", True),
    # ? is exactly one character, never zero or two
    ("topic/dev/?/out", "topic/dev/A/out", True),
    ("topic/dev/?/out", "topic/dev//out", False),
    ("topic/dev/?/out", "topic/dev/out", False),
    ("topic/dev/?/out", "topic/dev/AB/out", False),
    ("topic/dev/??", "topic/dev/a", False),
    # whole-string: no prefix or substring matches
    ("topic/dev/X", "topic/dev/X/out", False),
    ("topic/dev/X", "topic/dev/XY", False),
    ("topic/X", "topic/dev/X", False),
    # case-sensitive resources
    ("topic/dev/x/out", "topic/dev/X/out", False),
    ("topic/Dev/*", "topic/dev/X", False),
    # regex metacharacters, $ and backslash are literal
    ("topic/a.b", "topic/aXb", False),
    ("topic/a.b", "topic/a.b", True),
    ("topic/[ab]", "topic/a", False),
    ("topic/[ab]", "topic/[ab]", True),
    ("topic/\\d", "topic/7", False),
    ("topic/\\d", "topic/\\d", True),
    ("topic/(a|b)", "topic/a", False),
    ("topic/a+", "topic/aa", False),
    ("topic/$aws/things/t/shadow/get", "topic/$aws/things/t/shadow/get", True),
    ("topic/$aws/things/*/shadow/get", "topic/$aws/things/t/shadow/get", True),
    ("topic/^x$", "topic/^x$", True),
    ("topic/^x$", "topic/x", False),
    # *? needs at least one character, ** is the same as *
    ("topic/a*?", "topic/a", False),
    ("topic/a*?", "topic/ab", True),
    ("topic/a**b", "topic/ab", True),
]


@pytest.mark.parametrize("pattern, name, expected", RESOURCE_CASES)
def test_resource_glob(pattern, name, expected):
    verdict = evaluate([allow("iot:*", PREFIX + pattern)], "iot:Subscribe", PREFIX + name)
    assert verdict == ("allow" if expected else "implicit_deny")


def test_star_in_region_and_account_swallows_colons_in_a_topic_name():
    # docs/topics-and-policies.md: a shortened ARN also matches a topic whose own name contains
    # ":topic/dev/X/out/", which the exact ARN does not.
    sneaky = arn(REGION, ACCOUNT, "topic", "a:topic/dev/X/out/z")
    assert allows([allow("iot:Publish", "arn:aws:iot:*:*:topic/dev/X/out/*")], "iot:Publish", sneaky)
    assert not allows([allow("iot:Publish", PREFIX + "topic/dev/X/out/*")], "iot:Publish", sneaky)


def test_star_in_account_also_matches_other_accounts():
    other = arn(REGION, "999999999999", "topic", "dev/X/out/z")
    assert allows([allow("iot:Publish", f"arn:aws:iot:{REGION}:*:topic/dev/X/out/*")], "iot:Publish", other)
    assert not allows([allow("iot:Publish", PREFIX + "topic/dev/X/out/*")], "iot:Publish", other)


def test_resource_type_is_part_of_the_match():
    # A topic grant is not a topicfilter grant, although the names agree.
    assert evaluate([allow("iot:Subscribe", PREFIX + "topic/dev/X/out/*")], "iot:Subscribe",
                    PREFIX + "topicfilter/dev/X/out/a") == "implicit_deny"


# --- action matching ------------------------------------------------------------------

ACTION_CASES = [
    ("iot:Publish", "iot:Publish", True),
    ("iot:publish", "iot:Publish", True),
    ("IOT:PUBLISH", "iot:Publish", True),
    ("iot:Publish", "IoT:pUbLiSh", True),
    ("iot:*", "iot:Receive", True),
    ("*", "iot:Connect", True),
    ("iot:Re*", "iot:Receive", True),
    ("iot:Re*", "iot:RetainPublish", True),
    ("iot:Re*", "iot:Publish", False),
    ("iot:?ublish", "iot:Publish", True),
    ("iot:?ublish", "iot:RetainPublish", False),
    ("iot:Publish", "iot:RetainPublish", False),
    ("iot:Publish", "iot:PublishX", False),
    ("iot:Sub*", "iot:Publish", False),
    ("iotx:Publish", "iot:Publish", False),
]


@pytest.mark.parametrize("pattern, action, expected", ACTION_CASES)
def test_action_match_is_case_insensitive_glob(pattern, action, expected):
    assert allows([allow(pattern, "*")], action, PREFIX + "topic/t") is expected


# --- combining statements and documents ------------------------------------------------

BROAD = allow("iot:Publish", PREFIX + "topic/dev/*")
NARROW_DENY = deny("iot:Publish", PREFIX + "topic/dev/X/in/*")


@pytest.mark.parametrize("documents", [[BROAD, NARROW_DENY], [NARROW_DENY, BROAD]])
def test_deny_in_any_document_beats_allow_in_any_other(documents):
    assert evaluate(documents, "iot:Publish", PREFIX + "topic/dev/X/in/cmd") == "deny"
    assert evaluate(documents, "iot:Publish", PREFIX + "topic/dev/Y/in/cmd") == "allow"


@pytest.mark.parametrize("order", [("Allow", "Deny"), ("Deny", "Allow")])
def test_deny_beats_allow_within_one_document_in_either_order(order):
    document = doc(*(stmt(effect, "iot:Publish", PREFIX + "topic/t") for effect in order))
    assert evaluate([document], "iot:Publish", PREFIX + "topic/t") == "deny"


def test_three_verdicts():
    documents = [BROAD, NARROW_DENY]
    assert evaluate(documents, "iot:Publish", PREFIX + "topic/dev/Y") == "allow"
    assert evaluate(documents, "iot:Publish", PREFIX + "topic/dev/X/in/a") == "deny"
    assert evaluate(documents, "iot:Publish", PREFIX + "topic/other") == "implicit_deny"
    assert evaluate(documents, "iot:Receive", PREFIX + "topic/dev/Y") == "implicit_deny"
    assert evaluate([], "iot:Publish", PREFIX + "topic/dev/Y") == "implicit_deny"


def test_allows_is_true_only_for_allow():
    documents = [BROAD, NARROW_DENY]
    assert allows(documents, "iot:Publish", PREFIX + "topic/dev/Y")
    assert not allows(documents, "iot:Publish", PREFIX + "topic/dev/X/in/a")
    assert not allows(documents, "iot:Publish", PREFIX + "topic/other")


def test_statement_may_be_one_object_and_action_resource_lists():
    single = {"Statement": stmt("Allow", ["iot:Receive", "iot:Publish"], [PREFIX + "topic/a", PREFIX + "topic/b"])}
    assert allows([single], "iot:Publish", PREFIX + "topic/b")
    assert allows([single], "iot:Receive", PREFIX + "topic/a")
    assert not allows([single], "iot:Publish", PREFIX + "topic/c")
    assert not allows([single], "iot:Subscribe", PREFIX + "topic/a")


def test_documents_may_be_json_strings_mixed_with_dicts():
    documents = (d for d in [json.dumps(BROAD), NARROW_DENY])
    assert evaluate(documents, "iot:Publish", PREFIX + "topic/dev/X/in/a") == "deny"
    assert evaluate([json.dumps(BROAD)], "iot:Publish", PREFIX + "topic/dev/X/in/a") == "allow"


@pytest.mark.parametrize("single", [json.dumps(BROAD), BROAD])
def test_one_document_instead_of_an_iterable_is_a_caller_error(single):
    with pytest.raises(TypeError):
        evaluate(single, "iot:Publish", PREFIX + "topic/dev/Y")


# --- documents we refuse ----------------------------------------------------------------

GOOD = stmt("Allow", "iot:Publish", PREFIX + "topic/t")
BAD_DOCUMENTS = {
    "not json": "{not json",
    "truncated json": json.dumps(allow("iot:Publish", "*"))[:-1],
    "json list": "[]",
    "json number": "42",
    "json string": '"policy"',
    "a list": [GOOD],
    "none": None,
    "missing Statement": {"Version": "2012-10-17"},
    "misspelt Statement": {"Statment": [GOOD]},
    "unknown top-level key": {"Statement": [GOOD], "Extra": 1},
    "empty Statement": {"Statement": []},
    "Statement a string": {"Statement": "Allow"},
    "statement not an object": {"Statement": ["Allow"]},
    "no Effect": {"Statement": [{"Action": "iot:*", "Resource": "*"}]},
    "no Action": {"Statement": [{"Effect": "Allow", "Resource": "*"}]},
    "no Resource": {"Statement": [{"Effect": "Allow", "Action": "iot:*"}]},
    "Effect lowercase": doc(stmt("allow", "iot:*", "*")),
    "Effect other": doc(stmt("Maybe", "iot:*", "*")),
    "Effect not a string": doc(stmt(["Allow"], "iot:*", "*")),
    "NotAction": doc({**GOOD, "NotAction": "iot:Connect"}),
    "NotResource": doc({**GOOD, "NotResource": "*"}),
    "Condition": doc({**GOOD, "Condition": {"Bool": {"iot:Connection.Thing.IsAttached": "true"}}}),
    "Principal": doc({**GOOD, "Principal": "*"}),
    "NotPrincipal": doc({**GOOD, "NotPrincipal": "*"}),
    "NotAction instead of Action": doc({"Effect": "Deny", "NotAction": "iot:Connect", "Resource": "*"}),
    "variable in Resource": doc(stmt("Allow", "iot:Connect", PREFIX + "client/${iot:ClientId}")),
    "variable in a Resource list": doc(stmt("Allow", "iot:Publish", [PREFIX + "topic/a", PREFIX + "topic/${a}/x"])),
    "special-character variable": doc(stmt("Allow", "iot:Publish", PREFIX + "topic/${*}")),
    "unclosed variable": doc(stmt("Allow", "iot:Publish", PREFIX + "topic/${x")),
    "variable in Action": doc(stmt("Allow", "iot:${x}", "*")),
    "empty Action list": doc(stmt("Allow", [], "*")),
    "empty Resource list": doc(stmt("Allow", "iot:*", [])),
    "Action not a string": doc(stmt("Allow", 7, "*")),
    "Resource item not a string": doc(stmt("Allow", "iot:*", ["*", None])),
    "Resource an object": doc(stmt("Allow", "iot:*", {"arn": "*"})),
    "duplicate keys": '{"Statement": [{"Effect": "Allow", "Effect": "Deny", "Action": "iot:*", "Resource": "*"}]}',
}


@pytest.mark.parametrize("bad", BAD_DOCUMENTS.values(), ids=BAD_DOCUMENTS.keys())
def test_refuses_what_it_cannot_evaluate_faithfully(bad):
    # Alongside a good document, so the bad one is not skipped and a verdict guessed.
    with pytest.raises(PolicyError):
        evaluate([allow("iot:*", "*"), bad], "iot:Publish", PREFIX + "topic/t")
    with pytest.raises(PolicyError):
        Connection([bad], REGION, ACCOUNT, "c1")


def test_policy_error_is_a_value_error_and_sid_is_accepted():
    assert issubclass(PolicyError, ValueError)
    document = doc({"Sid": "pub", **GOOD})
    assert allows([document], "iot:Publish", PREFIX + "topic/t")


def test_dollar_without_brace_is_literal_not_a_variable():
    document = allow("iot:Publish", PREFIX + "topic/$iot:ClientId")
    assert allows([document], "iot:Publish", PREFIX + "topic/$iot:ClientId")
    assert not allows([document], "iot:Publish", PREFIX + "topic/c1")


# --- Connection ---------------------------------------------------------------------------

CONNECT_C1 = allow("iot:Connect", PREFIX + "client/c1")
DEVICE = doc(
    stmt("Allow", ["iot:Publish", "iot:Receive"], PREFIX + "topic/dev/X/out/*"),
    stmt("Allow", "iot:Subscribe", PREFIX + "topicfilter/dev/X/out/*"),
    stmt("Allow", "iot:GetThingShadow", PREFIX + "thing/X"),
)


def test_connection_grants_what_the_policy_allows_once_it_can_connect():
    c = Connection([CONNECT_C1, DEVICE], REGION, ACCOUNT, "c1")
    assert c.can("iot:Connect", "c1")
    assert c.can("iot:Publish", "dev/X/out/t")
    assert c.can("iot:Receive", "dev/X/out/t")
    assert c.can("iot:Subscribe", "dev/X/out/#")
    assert c.can("iot:GetThingShadow", "X")
    assert not c.can("iot:Subscribe", "dev/+/out/#")
    assert not c.can("iot:Publish", "dev/Y/out/t")
    assert not c.can("iot:GetThingShadow", "Y")
    assert not c.can("iot:UpdateThingShadow", "X")


def test_nothing_without_connect_for_its_own_client_id():
    # Connect granted only to another client id, or not at all.
    for documents in ([DEVICE], [allow("iot:Connect", PREFIX + "client/c2"), DEVICE]):
        c = Connection(documents, REGION, ACCOUNT, "c1")
        assert c.decide("iot:Publish", "dev/X/out/t") == "allow"
        assert not c.can("iot:Connect", "c1")
        assert not c.can("iot:Publish", "dev/X/out/t")
        assert not c.can("iot:Subscribe", "dev/X/out/#")
        assert not c.can("iot:Receive", "dev/X/out/t")
        assert not c.can("iot:GetThingShadow", "X")


def test_denied_connect_cancels_a_broad_allow():
    c = Connection([allow("iot:*", "*"), deny("iot:Connect", PREFIX + "client/c1")], REGION, ACCOUNT, "c1")
    assert not c.can("iot:Publish", "dev/X/out/t")
    assert Connection([allow("iot:*", "*")], REGION, ACCOUNT, "c1").can("iot:Publish", "dev/X/out/t")


def test_connect_probes_other_client_ids():
    # So an audit sees a grant wider than the one client id.
    exact = Connection([CONNECT_C1], REGION, ACCOUNT, "c1")
    wide = Connection([allow("iot:Connect", PREFIX + "client/*")], REGION, ACCOUNT, "c1")
    assert not exact.can("iot:Connect", "c2") and not exact.can("iot:Connect", "+")
    assert wide.can("iot:Connect", "c2") and wide.can("iot:Connect", "+")


def test_connection_uses_its_region_and_account():
    assert not Connection([CONNECT_C1, DEVICE], "eu-west-1", ACCOUNT, "c1").can("iot:Connect", "c1")
    anywhere = allow("iot:Connect", "*")
    assert Connection([anywhere, DEVICE], REGION, ACCOUNT, "c1").can("iot:Publish", "dev/X/out/t")
    assert not Connection([anywhere, DEVICE], REGION, "999999999999", "c1").can("iot:Publish", "dev/X/out/t")


def test_named_shadow_is_a_thing_resource_below_the_thing():
    c = Connection([CONNECT_C1, allow("iot:UpdateThingShadow", PREFIX + "thing/X/*")], REGION, ACCOUNT, "c1")
    assert c.can("iot:UpdateThingShadow", "X/lights")
    assert not c.can("iot:UpdateThingShadow", "X")


def test_retain_publish_also_needs_publish():
    retain_only = Connection([CONNECT_C1, allow("iot:RetainPublish", PREFIX + "topic/t")], REGION, ACCOUNT, "c1")
    both = Connection([CONNECT_C1, allow(["iot:RetainPublish", "iot:Publish"], PREFIX + "topic/t")],
                      REGION, ACCOUNT, "c1")
    assert not retain_only.can("iot:RetainPublish", "t")
    assert both.can("iot:RetainPublish", "t")


def test_permits_judges_without_connect_but_keeps_retain_publishs_prerequisite():
    # An HTTPS publish makes no CONNECT: no Connect prerequisite, but
    # RetainPublish still needs Publish (iot-policy-actions.html).
    retain_only = Connection([allow("iot:RetainPublish", PREFIX + "topic/t")], REGION, ACCOUNT, "")
    both = Connection([allow(["iot:RetainPublish", "iot:Publish"], PREFIX + "topic/t")], REGION, ACCOUNT, "")
    assert not retain_only.connects and not both.connects
    assert not retain_only.permits("iot:RetainPublish", "t")
    assert both.permits("iot:RetainPublish", "t") and both.permits("iot:Publish", "t")
    assert not both.can("iot:Publish", "t")
    assert not both.permits("iot:Publish", "u")


def test_can_takes_any_case_of_action_and_refuses_unknown_actions():
    c = Connection([CONNECT_C1, DEVICE], REGION, ACCOUNT, "c1")
    assert c.can("IOT:PUBLISH", "dev/X/out/t")
    with pytest.raises(ValueError):
        c.can("iot:DescribeThing", "X")


def test_connection_parses_once_and_ignores_later_changes():
    device = json.loads(json.dumps(DEVICE))
    c = Connection(iter([CONNECT_C1, device]), REGION, ACCOUNT, "c1")
    device["Statement"][0]["Resource"] = "*"
    assert c.can("iot:Publish", "dev/X/out/t")
    assert not c.can("iot:Publish", "dev/Y/out/t")
    assert c.can("iot:Receive", "dev/X/out/t")


# --- the glob against a reference --------------------------------------------------------

WILD = "ab*?+#$/:.\\[]"
patterns = st.text(alphabet=WILD, max_size=12)
texts = st.text(alphabet="ab*?+#$/:.\\[]", max_size=14)


@settings(max_examples=600, deadline=None)
@given(patterns, texts)
def test_glob_agrees_with_reference(pattern, text):
    assert evaluator._glob(pattern, text) is reference_glob(pattern, text)


@settings(max_examples=300, deadline=None)
@given(patterns, st.data())
def test_glob_matches_every_expansion_of_a_pattern(pattern, data):
    # Random pairs rarely match; expanding the pattern makes matches common.
    filler = st.text(alphabet=WILD, max_size=4)
    text = "".join(data.draw(filler) if c == "*" else data.draw(st.sampled_from(WILD)) if c == "?" else c
                   for c in pattern)
    assert evaluator._glob(pattern, text)
    assert reference_glob(pattern, text)


@settings(max_examples=300, deadline=None)
@given(patterns, texts)
def test_evaluate_uses_the_same_glob_for_resources(pattern, text):
    expected = "allow" if reference_glob(pattern, text) else "implicit_deny"
    assert evaluate([allow("iot:Publish", pattern)], "iot:Publish", text) == expected


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="aAbB*?:", max_size=10), st.text(alphabet="aAbB:", max_size=10))
def test_action_glob_is_the_same_glob_folded(pattern, action):
    expected = reference_glob(pattern.lower(), action.lower())
    assert allows([allow(pattern, "*")], action, "r") is expected


def test_many_stars_do_not_backtrack_catastrophically():
    # A backtracking matcher tries ~C(3000, 40) placements here and never returns.
    stars = "*a" * 40
    assert not evaluator._glob(stars + "*b", "a" * 3000)
    assert not evaluator._glob(stars + "*", "a" * 39 + "x" * 3000)
    assert evaluator._glob(stars + "*b", "xa" * 1500 + "b")
    documents = [allow("iot:Publish", PREFIX + stars + "*b")]
    assert evaluate(documents, "iot:Publish", PREFIX + "a" * 3000) == "implicit_deny"


def test_patterns_are_compiled_once():
    evaluator._compile.cache_clear()
    for _ in range(3):
        evaluate([allow("iot:Publish", PREFIX + "topic/*")], "iot:Publish", PREFIX + "topic/t")
    assert evaluator._compile.cache_info().misses == 2  # the action and the resource
