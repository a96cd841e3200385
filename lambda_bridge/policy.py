"""What a principal may do, as AWS IoT policy documents (SPEC §3). Pure.

Topic scheme, thing = thing name:
    dev/{thing}/out/...            device → apps; view and up subscribe and receive
    dev/{thing}/in/...             apps → device; control and up publish
    $aws/things/{thing}/shadow/... view: get + receive; control: + update

Every resource is a full ARN with the exact region and account: a `*` there
could swallow colons inside a topic name and reach other topics (SPEC §3).
Names come from the snapshot and the token, both limited to the thing-name
alphabet, so none of them can act as a wildcard.

The answer fits in 10 documents of 2,048 characters or there is no answer:
None means "too many grants for one connection" and the caller refuses with
`scope_required`. Nothing is ever dropped to make it fit.
"""
from __future__ import annotations

import json
import re

from lambda_bridge.snapshot import CONTROL

MAX_DOCUMENTS = 10
MAX_CHARACTERS = 2048
_THING = re.compile(r"[A-Za-z0-9:_-]{1,128}")
# A person's client id adds dots (see tokens.py); neither may hold a wildcard.
_CLIENT_ID = re.compile(r"[A-Za-z0-9:._-]{1,128}")

_DOC_OPEN = '{"Version":"2012-10-17","Statement":['
_DOC_CLOSE = "]}"
_STATEMENT_CLOSE = "]}"


class PolicyInputError(ValueError):
    """A name that could widen a policy; never turned into a resource."""


def user_documents(*, levels: dict[str, int], client_id: str, region: str, account: str) -> list[str] | None:
    """Documents for a person's app connected as `client_id` with `levels`
    (thing name → level code, only the grants in force)."""
    arn = _arns(region, account)
    things = sorted(_checked(t, _THING) for t in levels)
    controlled = [t for t in things if levels[t] >= CONTROL]
    publish = []
    for thing in things:
        shadow = f"$aws/things/{thing}/shadow"
        publish += [arn("topic", f"{shadow}/get"), arn("topic", f"{shadow}/name/*/get")]
    for thing in controlled:
        shadow = f"$aws/things/{thing}/shadow"
        publish += [arn("topic", f"dev/{thing}/in/*"), arn("topic", f"{shadow}/update"),
                    arn("topic", f"{shadow}/name/*/update")]
    return pack([
        (("iot:Connect",), [arn("client", _checked(client_id, _CLIENT_ID))]),
        (("iot:Subscribe",), [arn("topicfilter", t) for thing in things for t in _readable(thing)]),
        (("iot:Receive",), [arn("topic", t) for thing in things for t in _readable(thing)]),
        (("iot:Publish",), publish),
    ])


def device_documents(*, thing: str, region: str, account: str) -> list[str]:
    """A device connects as its thing name and owns its topics and shadow."""
    arn = _arns(region, account)
    thing = _checked(thing, _THING)
    shadow = f"$aws/things/{thing}/shadow/*"
    inbound = [f"dev/{thing}/in/*", shadow]
    documents = pack([
        (("iot:Connect",), [arn("client", thing)]),
        (("iot:Publish",), [arn("topic", f"dev/{thing}/out/*"), arn("topic", shadow)]),
        # Retained telemetry lets an app see the last state the moment it subscribes.
        (("iot:RetainPublish",), [arn("topic", f"dev/{thing}/out/*")]),
        (("iot:Subscribe",), [arn("topicfilter", t) for t in inbound]),
        (("iot:Receive",), [arn("topic", t) for t in inbound]),
    ])
    if documents is None:  # a 128-character name still fits many times over
        raise PolicyInputError(f"{thing!r} does not fit a policy")
    return documents


def _readable(thing: str) -> tuple[str, str]:
    return f"dev/{thing}/out/*", f"$aws/things/{thing}/shadow/*"


def _arns(region: str, account: str):
    prefix = f"arn:aws:iot:{region}:{account}:"
    return lambda resource_type, name: f"{prefix}{resource_type}/{name}"


def _checked(name: str, pattern: re.Pattern) -> str:
    if not isinstance(name, str) or not pattern.fullmatch(name):
        raise PolicyInputError(f"{name!r} is not a thing name or client id")
    return name


def pack(statements: list[tuple[tuple[str, ...], list[str]]], *, max_documents: int = MAX_DOCUMENTS,
         max_characters: int = MAX_CHARACTERS) -> list[str] | None:
    """Allow statements, one per action set, filled into as few documents as
    fit; a statement too long for the document it starts in continues in the
    next. Same input, same output. None when it does not fit."""
    documents: list[list[tuple[str, list[str]]]] = [[]]
    size = len(_DOC_OPEN) + len(_DOC_CLOSE)
    for actions, resources in statements:
        opening = '{"Effect":"Allow","Action":' + json.dumps(list(actions), separators=(",", ":")) + ',"Resource":['
        for resource in map(json.dumps, resources):
            current = documents[-1]
            continuing = bool(current) and current[-1][0] == opening
            extra = len(resource) + 1 if continuing else (
                (1 if current else 0) + len(opening) + len(resource) + len(_STATEMENT_CLOSE))
            if size + extra > max_characters:
                documents.append([])
                size = len(_DOC_OPEN) + len(_DOC_CLOSE)
                continuing, extra = False, len(opening) + len(resource) + len(_STATEMENT_CLOSE)
                if size + extra > max_characters or len(documents) > max_documents:
                    return None
            if continuing:
                documents[-1][-1][1].append(resource)
            else:
                documents[-1].append((opening, [resource]))
            size += extra
    rendered = [
        _DOC_OPEN + ",".join(opening + ",".join(rs) + _STATEMENT_CLOSE for opening, rs in doc) + _DOC_CLOSE
        for doc in documents if doc
    ]
    # The arithmetic above is the plan; the rendered text is the contract.
    if len(rendered) > max_documents or any(len(d) > max_characters for d in rendered):
        return None
    return rendered
