"""platform/authorizer.yaml: cfn-lint finds nothing, and the template grants
what the authorizer needs and nothing more.

Each check is a function run on the real template and, to show it can fail,
on copies with one thing broken."""
import copy

import pytest
from cfnlint.api import lint
from cfnlint.config import ManualArgs
from cfnlint.decode.decode import decode_str

from local_iot.gateway import DEFAULT_AUTHORIZER_NAME, DEFAULT_COMPACT_AUTHORIZER_NAME
from tests.support.paths import ROOT

TEMPLATE = ROOT / "platform" / "authorizer.yaml"
# A few regions where AWS IoT Core and Lambda's python3.12 both exist.
REGIONS = ["us-east-1", "eu-west-1", "ap-northeast-1"]
HANDLER = "lambda_bridge.handler.lambda_handler"
ENVIRONMENT = {
    "DEVSHARE_TABLE", "DEVSHARE_TOKEN_ISSUER", "DEVSHARE_TOKEN_AUDIENCE", "DEVSHARE_TOKEN_KEY_NAME",
    "DEVSHARE_AWS_ACCOUNT_ID", "DEVSHARE_IOT_REGION", "DEVSHARE_REFRESH_SECONDS",
    "DEVSHARE_DISCONNECT_SECONDS", "DEVSHARE_LEEWAY_SECONDS", "DEVSHARE_KEY_CACHE_SECONDS",
}


def load(text: str | None = None) -> dict:
    template, errors = decode_str(TEMPLATE.read_text() if text is None else text)
    assert not errors, [str(e) for e in errors]
    return template


@pytest.fixture(scope="module")
def template() -> dict:
    return load()


def run_cfn_lint(text: str) -> list[str]:
    """Errors and warnings (cfn-lint's defaults), as printable lines."""
    return [f"{m.rule.id} {m.message} (line {m.linenumber})" for m in lint(text, config=ManualArgs(regions=REGIONS))]


# --- helpers over the decoded template -------------------------------------------------

def resources(template: dict, kind: str) -> dict[str, dict]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == kind}


def only(template: dict, kind: str) -> tuple[str, dict]:
    found = resources(template, kind)
    assert len(found) == 1, f"expected one {kind}, found {sorted(found)}"
    return next(iter(found.items()))


def authorizer(template: dict, *, signing: bool) -> tuple[str, dict]:
    """The one authorizer with signing on (platform tokens) or off (compact device tokens)."""
    found = {name: r for name, r in resources(template, "AWS::IoT::Authorizer").items()
             if r["Properties"].get("SigningDisabled") is not signing}
    assert len(found) == 1, f"expected one authorizer with signing {'on' if signing else 'off'}, found {sorted(found)}"
    return next(iter(found.items()))


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def get_att(name: str, attribute: str = "Arn") -> dict:
    return {"Fn::GetAtt": [name, attribute]}


def refs(value) -> set[str]:
    """Every name a value !Refs, however deeply nested (Fn::If, Fn::Sub lists...)."""
    if isinstance(value, dict):
        found = {value["Ref"]} if "Ref" in value and isinstance(value["Ref"], str) else set()
        for item in value.values():
            found |= refs(item)
        return found
    if isinstance(value, list):
        return set().union(*(refs(item) for item in value)) if value else set()
    return set()


def role_statements(template: dict, role: str) -> list[dict]:
    """Every statement that applies to `role`: inline policies and any
    AWS::IAM::Policy / ManagedPolicy resource attached to it."""
    properties = template["Resources"][role]["Properties"]
    assert not properties.get("ManagedPolicyArns"), "managed policies grant more than the authorizer needs"
    documents = [p["PolicyDocument"] for p in properties.get("Policies", [])]
    for kind in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
        for policy in resources(template, kind).values():
            if {"Ref": role} in as_list(policy["Properties"].get("Roles", [])):
                documents.append(policy["Properties"]["PolicyDocument"])
    return [s for document in documents for s in as_list(document["Statement"])]


# --- the checks -------------------------------------------------------------------------

def check_function_role_is_least_privilege(template: dict) -> None:
    _, function = only(template, "AWS::Lambda::Function")
    role = function["Properties"]["Role"]["Fn::GetAtt"][0]
    table, _ = only(template, "AWS::DynamoDB::Table")
    log_group, _ = only(template, "AWS::Logs::LogGroup")
    allowed_actions = set()
    for statement in role_statements(template, role):
        assert "NotAction" not in statement and "NotResource" not in statement, statement
        if statement["Effect"] != "Allow":
            continue
        actions = [a.lower() for a in as_list(statement["Action"])]
        resources_ = as_list(statement["Resource"])
        allowed_actions |= set(actions)
        if any(a == "*" or a.startswith("dynamodb:") for a in actions):
            assert actions == ["dynamodb:getitem"], f"the Lambda may only GetItem: {actions}"
            assert resources_ == [get_att(table)], f"GetItem on the table's ARN only: {resources_}"
        if any(a == "*" or a.startswith("logs:") for a in actions):
            assert resources_ == [get_att(log_group)], f"logs to its own group only: {resources_}"
    assert allowed_actions == {"dynamodb:getitem", "logs:createlogstream", "logs:putlogevents"}


def check_function_runtime_and_handler(template: dict) -> None:
    _, function = only(template, "AWS::Lambda::Function")
    properties = function["Properties"]
    assert properties["Runtime"] == "python3.12"
    assert properties["Handler"] == HANDLER
    assert properties.get("Architectures") == ["x86_64"]
    # IoT gives an authorizer 5 s.
    assert 1 <= properties["Timeout"] <= 5
    variables = properties["Environment"]["Variables"]
    assert set(variables) == ENVIRONMENT
    table, _ = only(template, "AWS::DynamoDB::Table")
    assert variables["DEVSHARE_TABLE"] == {"Ref": table}


def check_authorizer_signing(template: dict) -> None:
    _, signed = authorizer(template, signing=True)
    function, _ = only(template, "AWS::Lambda::Function")
    properties = signed["Properties"]
    parameters = template["Parameters"]
    assert properties["SigningDisabled"] is False
    assert properties["AuthorizerName"] == {"Ref": "AuthorizerName"}
    assert properties["Status"] == "ACTIVE"
    assert properties["AuthorizerFunctionArn"] == get_att(function)
    assert properties["TokenKeyName"] == {"Ref": "TokenKeyName"} and "TokenKeyName" in parameters
    # The Lambda must look for the token under the same name the gateway uses.
    env = template["Resources"][function]["Properties"]["Environment"]["Variables"]
    assert env["DEVSHARE_TOKEN_KEY_NAME"] == properties["TokenKeyName"]
    keys = refs(properties["TokenSigningPublicKeys"])
    assert keys == {"SigningPublicKeyA", "SigningPublicKeyB"}, keys
    assert keys <= set(parameters)
    # Slot A is required; slot B may stay empty until the first rotation.
    assert "Default" not in parameters["SigningPublicKeyA"]
    assert parameters["SigningPublicKeyB"].get("Default") == ""


def check_compact_authorizer(template: dict) -> None:
    """The unsigned authorizer: the same function and token key name, signing
    disabled, no keys of its own (its keys are in the key item only)."""
    _, compact = authorizer(template, signing=False)
    function, _ = only(template, "AWS::Lambda::Function")
    properties = compact["Properties"]
    parameters = template["Parameters"]
    assert properties["SigningDisabled"] is True
    assert properties["Status"] == "ACTIVE"
    assert properties["AuthorizerFunctionArn"] == get_att(function)
    assert properties["TokenKeyName"] == {"Ref": "TokenKeyName"}
    assert "TokenSigningPublicKeys" not in properties
    assert properties["AuthorizerName"] == {"Ref": "CompactAuthorizerName"}
    assert parameters["CompactAuthorizerName"]["Default"] == DEFAULT_COMPACT_AUTHORIZER_NAME
    assert parameters["AuthorizerName"]["Default"] == DEFAULT_AUTHORIZER_NAME
    # The two names can never be the same one.
    asserted = [a["Assert"] for rule in template.get("Rules", {}).values() for a in rule["Assertions"]]
    assert {"Fn::Not": [{"Fn::Equals": [{"Ref": "AuthorizerName"}, {"Ref": "CompactAuthorizerName"}]}]} in asserted


def check_invoke_permission(template: dict) -> None:
    """One permission per authorizer, each limited to that authorizer's ARN."""
    function, _ = only(template, "AWS::Lambda::Function")
    authorizers = sorted(str(get_att(name)) for name in resources(template, "AWS::IoT::Authorizer"))
    permissions = resources(template, "AWS::Lambda::Permission").values()
    for permission in permissions:
        properties = permission["Properties"]
        assert properties["Principal"] == "iot.amazonaws.com"
        assert properties["Action"] == "lambda:InvokeFunction"
        assert properties["FunctionName"] in (get_att(function), {"Ref": function})
        assert properties.get("SourceAccount") == {"Ref": "AWS::AccountId"}
    assert sorted(str(p["Properties"].get("SourceArn")) for p in permissions) == authorizers


def check_django_policies(template: dict) -> None:
    table, _ = only(template, "AWS::DynamoDB::Table")
    # Rotation publishes RSA keys to the signed authorizer only; compact keys
    # live in the key item alone.
    signed, _ = authorizer(template, signing=True)
    policies = resources(template, "AWS::IAM::ManagedPolicy")
    grants = {}
    for name, policy in policies.items():
        for statement in as_list(policy["Properties"]["PolicyDocument"]["Statement"]):
            for resource in as_list(statement["Resource"]):
                assert resource != "*", f"{name} grants on every resource"
                grants.setdefault(name, set()).update((a, str(resource)) for a in as_list(statement["Action"]))
    on_table = str(get_att(table))
    writer = {(a, on_table) for a in
              ("dynamodb:PutItem", "dynamodb:GetItem", "dynamodb:DescribeTable", "dynamodb:DescribeTimeToLive",
               "dynamodb:BatchGetItem")}
    rotation = {("dynamodb:PutItem", on_table), ("dynamodb:GetItem", on_table),
                ("iot:UpdateAuthorizer", str(get_att(signed))),
                ("iot:DescribeAuthorizer", str(get_att(signed)))}
    # iot-data's connection calls take the client's ARN (docs/deploy.md#8-the-data-plane):
    # this stack's region and account only.
    clients = str({"Fn::Sub": "arn:${AWS::Partition}:iot:${AWS::Region}:${AWS::AccountId}:client/*"})
    sessions = {("iot:DeleteConnection", clients), ("iot:GetConnection", clients)}
    assert grants == {"SnapshotWriterPolicy": writer, "KeyRotationPolicy": rotation, "LiveSessionsPolicy": sessions}
    outputs = {o["Value"].get("Ref") for o in template["Outputs"].values() if "Export" in o}
    assert set(policies) <= outputs, "both policy ARNs are exported"


def check_table(template: dict) -> None:
    _, table = only(template, "AWS::DynamoDB::Table")
    properties = table["Properties"]
    assert properties["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
    assert properties["AttributeDefinitions"] == [{"AttributeName": "pk", "AttributeType": "S"}]
    assert properties["BillingMode"] == "PAY_PER_REQUEST"
    assert properties.get("TimeToLiveSpecification") == {"AttributeName": "ttl", "Enabled": True}
    assert properties.get("PointInTimeRecoverySpecification", {}).get("PointInTimeRecoveryEnabled") is True
    assert properties.get("SSESpecification", {}).get("SSEEnabled") is True


CHECKS = [
    check_function_role_is_least_privilege, check_function_runtime_and_handler, check_authorizer_signing,
    check_compact_authorizer, check_invoke_permission, check_django_policies, check_table,
]


# --- the tests --------------------------------------------------------------------------

def test_cfn_lint_finds_no_error_or_warning():
    assert run_cfn_lint(TEMPLATE.read_text()) == []


@pytest.mark.parametrize("old, new, level", [
    ("Runtime: python3.12", "Runtime: python3.99", "E"),  # no such runtime
    ("Parameters:\n", "Parameters:\n  Unused:\n    Type: String\n", "W"),  # a parameter nothing uses
])
def test_cfn_lint_reports_errors_and_warnings(old, new, level):
    text = TEMPLATE.read_text()
    broken = text.replace(old, new, 1)
    assert broken != text
    assert any(line.startswith(level) for line in run_cfn_lint(broken)), run_cfn_lint(broken)


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_template(template, check):
    check(template)


def _role_policy(t):
    return t["Resources"]["FunctionRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]


def _function(t):
    return t["Resources"]["Function"]["Properties"]


def _authorizer(t):
    return t["Resources"]["Authorizer"]["Properties"]


def _permission(t):
    return t["Resources"]["AuthorizerInvokePermission"]["Properties"]


def _compact(t):
    return t["Resources"]["CompactAuthorizer"]["Properties"]


def _compact_permission(t):
    return t["Resources"]["CompactAuthorizerInvokePermission"]["Properties"]


def _sessions(t):
    return t["Resources"]["LiveSessionsPolicy"]["Properties"]["PolicyDocument"]["Statement"][0]


def _statement(t, sid):
    return next(s for s in _role_policy(t) if s.get("Sid") == sid)


BREAKAGES = {
    # The Lambda's role.
    "lambda may put items": (check_function_role_is_least_privilege,
                             lambda t: _statement(t, "ReadSnapshotsAndKeys").update(
                                 Action=["dynamodb:GetItem", "dynamodb:PutItem"])),
    "lambda may get items anywhere": (check_function_role_is_least_privilege,
                                      lambda t: _statement(t, "ReadSnapshotsAndKeys").update(Resource="*")),
    "lambda may use dynamodb:*": (check_function_role_is_least_privilege,
                                  lambda t: _statement(t, "ReadSnapshotsAndKeys").update(Action="dynamodb:*")),
    "lambda may query too": (check_function_role_is_least_privilege,
                             lambda t: _role_policy(t).append(
                                 {"Effect": "Allow", "Action": "dynamodb:Query", "Resource": get_att("Table")})),
    "lambda has an extra service": (check_function_role_is_least_privilege,
                                    lambda t: _role_policy(t).append(
                                        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*"})),
    "lambda has a managed policy": (check_function_role_is_least_privilege,
                                    lambda t: t["Resources"]["FunctionRole"]["Properties"].update(
                                        ManagedPolicyArns=["arn:aws:iam::aws:policy/AmazonDynamoDBReadOnlyAccess"])),
    "writer policy attached to the lambda": (check_function_role_is_least_privilege,
                                             lambda t: t["Resources"]["SnapshotWriterPolicy"]["Properties"].update(
                                                 Roles=[{"Ref": "FunctionRole"}])),
    "lambda logs anywhere": (check_function_role_is_least_privilege,
                             lambda t: _statement(t, "Logs").update(Resource="*")),
    # The function.
    "python 3.11": (check_function_runtime_and_handler, lambda t: _function(t).update(Runtime="python3.11")),
    "other handler": (check_function_runtime_and_handler, lambda t: _function(t).update(Handler="handler.main")),
    "arm64": (check_function_runtime_and_handler, lambda t: _function(t).update(Architectures=["arm64"])),
    "slow": (check_function_runtime_and_handler, lambda t: _function(t).update(Timeout=30)),
    "missing variable": (check_function_runtime_and_handler,
                         lambda t: _function(t)["Environment"]["Variables"].pop("DEVSHARE_TOKEN_AUDIENCE")),
    "local endpoint in AWS": (check_function_runtime_and_handler,
                              lambda t: _function(t)["Environment"]["Variables"].update(
                                  DEVSHARE_DYNAMODB_ENDPOINT_URL="http://127.0.0.1:8001")),
    # The authorizer.
    "signing disabled": (check_authorizer_signing, lambda t: _authorizer(t).update(SigningDisabled=True)),
    "inactive": (check_authorizer_signing, lambda t: _authorizer(t).update(Status="INACTIVE")),
    "fixed token key name": (check_authorizer_signing, lambda t: _authorizer(t).update(TokenKeyName="token")),
    "lambda reads another key name": (check_authorizer_signing,
                                      lambda t: _function(t)["Environment"]["Variables"].update(
                                          DEVSHARE_TOKEN_KEY_NAME="token")),
    "slot B never used": (check_authorizer_signing,
                          lambda t: _authorizer(t).update(TokenSigningPublicKeys={"A": {"Ref": "SigningPublicKeyA"}})),
    "slot B required": (check_authorizer_signing, lambda t: t["Parameters"]["SigningPublicKeyB"].pop("Default")),
    # The compact authorizer.
    "compact signing on": (check_compact_authorizer, lambda t: _compact(t).update(SigningDisabled=False)),
    "compact inactive": (check_compact_authorizer, lambda t: _compact(t).update(Status="INACTIVE")),
    "compact other key name": (check_compact_authorizer, lambda t: _compact(t).update(TokenKeyName="token")),
    "compact keys": (check_compact_authorizer,
                     lambda t: _compact(t).update(TokenSigningPublicKeys={"A": {"Ref": "SigningPublicKeyA"}})),
    "compact fixed name": (check_compact_authorizer, lambda t: _compact(t).update(AuthorizerName="tiny")),
    "compact name default": (check_compact_authorizer,
                             lambda t: t["Parameters"]["CompactAuthorizerName"].update(Default="devshare-tiny")),
    "compact another function": (check_compact_authorizer,
                                 lambda t: _compact(t).update(AuthorizerFunctionArn="arn:aws:lambda:::function:x")),
    "names may be equal": (check_compact_authorizer, lambda t: t.pop("Rules")),
    "no compact authorizer": (check_compact_authorizer, lambda t: t["Resources"].pop("CompactAuthorizer")),
    # The invoke permissions.
    "any principal": (check_invoke_permission, lambda t: _permission(t).update(Principal="*")),
    "no source arn": (check_invoke_permission, lambda t: _permission(t).pop("SourceArn")),
    "source arn of the function": (check_invoke_permission,
                                   lambda t: _permission(t).update(SourceArn=get_att("Function"))),
    "no source account": (check_invoke_permission, lambda t: _permission(t).pop("SourceAccount")),
    "compact not permitted": (check_invoke_permission,
                              lambda t: t["Resources"].pop("CompactAuthorizerInvokePermission")),
    "compact permitted as the signed one": (check_invoke_permission,
                                            lambda t: _compact_permission(t).update(SourceArn=get_att("Authorizer"))),
    "compact any principal": (check_invoke_permission, lambda t: _compact_permission(t).update(Principal="*")),
    "rotation on the compact authorizer": (check_django_policies,
                                           lambda t: t["Resources"]["KeyRotationPolicy"]["Properties"]
                                           ["PolicyDocument"]["Statement"][0].update(
                                               Resource=get_att("CompactAuthorizer"))),
    # Django's policies and the table.
    "writer may delete": (check_django_policies,
                          lambda t: (t["Resources"]["SnapshotWriterPolicy"]["Properties"]["PolicyDocument"]
                                     ["Statement"][0]["Action"].append("dynamodb:DeleteItem"))),
    "rotation on every authorizer": (check_django_policies,
                                     lambda t: t["Resources"]["KeyRotationPolicy"]["Properties"]["PolicyDocument"]
                                     ["Statement"][0].update(Resource="*")),
    "policy not exported": (check_django_policies, lambda t: t["Outputs"].pop("KeyRotationPolicyArn")),
    "sessions policy not exported": (check_django_policies, lambda t: t["Outputs"].pop("LiveSessionsPolicyArn")),
    "sessions in every region and account": (check_django_policies,
                                             lambda t: _sessions(t).update(Resource="arn:aws:iot:*:*:client/*")),
    "sessions may publish": (check_django_policies, lambda t: _sessions(t)["Action"].append("iot:Publish")),
    "no GetConnection": (check_django_policies, lambda t: _sessions(t).update(Action=["iot:DeleteConnection"])),
    "no ttl": (check_table, lambda t: t["Resources"]["Table"]["Properties"].pop("TimeToLiveSpecification")),
    "no pitr": (check_table, lambda t: t["Resources"]["Table"]["Properties"].update(
        PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": False})),
}


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_each_check_fails_on_a_broken_template(template, breakage):
    check, damage = BREAKAGES[breakage]
    broken = copy.deepcopy(template)
    damage(broken)
    with pytest.raises(AssertionError):
        check(broken)


def test_the_settings_the_template_passes_are_the_ones_the_lambda_reads():
    import re

    read = set(re.findall(r'"(DEVSHARE_\w+)"', (ROOT / "lambda_bridge" / "config.py").read_text()))
    # The endpoint override is for moto only; in AWS the client finds DynamoDB itself.
    assert read - {"DEVSHARE_DYNAMODB_ENDPOINT_URL"} == ENVIRONMENT
