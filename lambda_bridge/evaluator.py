"""Evaluate AWS IoT Core policy documents the way the message broker does, so
tests and the access audit can prove by behaviour what a generated policy grants.

Stdlib only: the Lambda ships this module as it is, and Django imports it too.
It understands exactly the subset the authorizer emits and refuses the rest
(PolicyError) rather than guess. AWS rules relied on:

- Explicit Deny in any policy beats any Allow; nothing matched is an implicit
  deny. https://docs.aws.amazon.com/iot/latest/developerguide/iot-policies.html
- In policies `*` is any run of characters and `?` exactly one; MQTT `+` and `#`
  are literal. https://docs.aws.amazon.com/iot/latest/developerguide/pub-sub-policy.html
  and .../iot-policy-variables.html
- A `*` may match across `/` and `:`.
  https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_resource.html
- Action names are case-insensitive.
  https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_action.html
- Resource ARN per action, and Publish/Subscribe need Connect, RetainPublish
  needs Publish. https://docs.aws.amazon.com/iot/latest/developerguide/iot-action-resources.html
  and .../iot-policy-actions.html
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache

RESOURCE_TYPES = {
    "iot:Connect": "client",
    "iot:Publish": "topic", "iot:RetainPublish": "topic", "iot:Receive": "topic",
    "iot:Subscribe": "topicfilter",
    "iot:GetThingShadow": "thing", "iot:UpdateThingShadow": "thing", "iot:DeleteThingShadow": "thing",
}
_TYPE_BY_ACTION = {name.lower(): kind for name, kind in RESOURCE_TYPES.items()}
_STATEMENT_KEYS = {"Sid", "Effect", "Action", "Resource"}
_DOCUMENT_KEYS = {"Version", "Id", "Statement"}


class PolicyError(ValueError):
    """A document this evaluator cannot evaluate faithfully."""


@dataclass(frozen=True)
class _Statement:
    allow: bool
    actions: tuple[str, ...]
    resources: tuple[str, ...]


def arn(region: str, account: str, resource_type: str, name: str) -> str:
    return f"arn:aws:iot:{region}:{account}:{resource_type}/{name}"


@lru_cache(maxsize=8192)
def _compile(pattern: str, fold_case: bool) -> tuple[re.Pattern, ...]:
    # One fixed-length regex per run between stars: `?` is `.`, everything else
    # escaped, no quantifiers, so no regex here can backtrack catastrophically.
    # IGNORECASE rather than str.lower(), which can change a string's length.
    flags = re.DOTALL | (re.IGNORECASE if fold_case else 0)
    return tuple(re.compile("".join("." if c == "?" else re.escape(c) for c in part), flags)
                 for part in pattern.split("*"))


def _glob(pattern: str, text: str, fold_case: bool = False) -> bool:
    """Whole-string match where `*` is any run (possibly empty) and `?` one character."""
    chunks = _compile(pattern, fold_case)
    if len(chunks) == 1:
        return chunks[0].fullmatch(text) is not None
    head = chunks[0].match(text)
    if head is None:
        return False
    pos = head.end()
    # Taking each middle run at its leftmost place leaves the most room for the
    # rest, so the first choice is never wrong and the scan never backtracks.
    for chunk in chunks[1:-1]:
        found = chunk.search(text, pos)
        if found is None:
            return False
        pos = found.end()
    start = len(text) - (len(pattern) - pattern.rfind("*") - 1)  # where the last run must begin
    return start >= pos and chunks[-1].fullmatch(text, start) is not None


def _strings(statement: dict, key: str) -> tuple[str, ...]:
    value = statement[key]
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values):
        raise PolicyError(f"{key} must be a string or a non-empty list of strings")
    if any("${" in v for v in values):
        # The broker substitutes policy variables; we never emit them and will not guess.
        raise PolicyError(f"policy variable in {key}: {values!r}")
    return tuple(values)


def _no_duplicate_keys(pairs: list) -> dict:
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        raise PolicyError(f"duplicate keys in {keys!r}")
    return dict(pairs)


@lru_cache(maxsize=1024)
def _parse_text(text: str | bytes) -> tuple[_Statement, ...]:
    try:
        document = json.loads(text, object_pairs_hook=_no_duplicate_keys)
    except PolicyError:
        raise
    except ValueError as error:  # JSONDecodeError and UnicodeDecodeError alike
        raise PolicyError(f"not JSON: {error}") from None
    return _parse_document(document)


def _parse_document(document: object) -> tuple[_Statement, ...]:
    if isinstance(document, (str, bytes)):
        return _parse_text(document)
    if not isinstance(document, dict):
        raise PolicyError("a policy document must be a JSON object")
    if "Statement" not in document or set(document) - _DOCUMENT_KEYS:
        raise PolicyError(f"need Statement and only {sorted(_DOCUMENT_KEYS)}, got {sorted(document)}")
    statements = document["Statement"]
    statements = [statements] if isinstance(statements, dict) else statements
    if not isinstance(statements, list) or not statements:
        raise PolicyError("Statement must be an object or a non-empty list of objects")
    parsed = []
    for statement in statements:
        if not isinstance(statement, dict):
            raise PolicyError("each statement must be an object")
        if set(statement) - _STATEMENT_KEYS:  # NotAction, Condition, Principal, ...
            raise PolicyError(f"unsupported statement elements {sorted(set(statement) - _STATEMENT_KEYS)}")
        if _STATEMENT_KEYS - {"Sid"} - set(statement):
            raise PolicyError(f"a statement needs Effect, Action and Resource, got {sorted(statement)}")
        if statement["Effect"] not in ("Allow", "Deny"):
            raise PolicyError(f"Effect must be Allow or Deny, got {statement['Effect']!r}")
        actions, resources = _strings(statement, "Action"), _strings(statement, "Resource")
        parsed.append(_Statement(statement["Effect"] == "Allow", actions, resources))
    return tuple(parsed)


def _parse_all(documents) -> tuple[_Statement, ...]:
    if isinstance(documents, (str, bytes, dict)):
        # Iterating one JSON string would evaluate its characters: a caller bug, not a policy.
        raise TypeError("documents must be an iterable of policy documents, not one document")
    return tuple(s for document in documents for s in _parse_document(document))


def _decide(statements: tuple[_Statement, ...], action: str, resource: str) -> str:
    verdict = "implicit_deny"
    for s in statements:
        if any(_glob(p, action, True) for p in s.actions) and any(_glob(p, resource) for p in s.resources):
            if not s.allow:
                return "deny"
            verdict = "allow"
    return verdict


def evaluate(documents, action: str, resource: str) -> str:
    """"allow", "deny" (an explicit Deny matched) or "implicit_deny" (nothing matched)."""
    return _decide(_parse_all(documents), action, resource)


def allows(documents, action: str, resource: str) -> bool:
    return evaluate(documents, action, resource) == "allow"


class Connection:
    """What one MQTT client, connected with these documents, may do."""

    def __init__(self, documents, region: str, account: str, client_id: str):
        self.statements = _parse_all(documents)
        self.region, self.account, self.client_id = region, account, client_id
        self.connects = self.decide("iot:Connect", client_id) == "allow"

    def decide(self, action: str, name: str) -> str:
        """The verdict on this action alone, without the Connect prerequisite."""
        kind = _TYPE_BY_ACTION.get(action.lower())
        if kind is None:
            raise ValueError(f"no resource type known for action {action!r}")
        return _decide(self.statements, action, arn(self.region, self.account, kind, name))

    def permits(self, action: str, name: str) -> bool:
        """The action with its own prerequisites (iot:RetainPublish needs
        iot:Publish on the same topic) but not iot:Connect: for a request
        that makes no MQTT CONNECT, such as an HTTPS publish."""
        if action.lower() == "iot:retainpublish" and self.decide("iot:Publish", name) != "allow":
            return False
        return self.decide(action, name) == "allow"

    def can(self, action: str, name: str) -> bool:
        """Whether the broker lets this client do it. For iot:Connect, `name` is the
        client id asked about, so an audit can also probe other ids."""
        if action.lower() == "iot:connect":
            return self.decide(action, name) == "allow"
        return self.connects and self.permits(action, name)
