"""What a principal may do, as AWS IoT policy documents (docs/topics-and-policies.md). Pure.

Topic scheme, thing = thing name:
    dev/{thing}/out/...            device → apps; view and up subscribe and receive
    dev/{thing}/in/...             apps → device; control and up publish
    $aws/things/{thing}/shadow/... view: get + receive; control: + update

Every resource is a full ARN with the exact region and account: a `*` there
could swallow colons inside a topic name and reach other topics (docs/topics-and-policies.md).
Names come from the snapshot and the token, both limited to the thing-name
alphabet, so none of them can act as a wildcard.

The answer fits in 10 documents of 2,048 characters or there is no answer:
None means "too many grants for one connection" and the caller refuses with
`scope_required`. Nothing is ever dropped to make it fit.
"""
from __future__ import annotations

import json
import re
from functools import lru_cache

from lambda_bridge import vocabulary
from lambda_bridge.snapshot import CONTROL

MAX_DOCUMENTS = 10
MAX_CHARACTERS = 2048
_THING = re.compile(vocabulary.THING_NAME)
# A person's client id adds dots (see tokens.py); neither may hold a wildcard.
_CLIENT_ID = re.compile(vocabulary.CLIENT_ID)

_DOC_OPEN = '{"Version":"2012-10-17","Statement":['
_DOC_CLOSE = "]}"
_STATEMENT_CLOSE = "]}"


class PolicyInputError(ValueError):
    """A name that could widen a policy; never turned into a resource."""


def user_documents(*, levels: dict[str, int], client_id: str, region: str, account: str) -> list[str] | None:
    """Documents for a person's app connected as `client_id` with `levels`
    (thing name → level code, only the grants in force)."""
    arn = _arn_prefix(region, account)
    things = sorted(_checked(t, _THING) for t in levels)
    readable = [topic for thing in things for topic in _readable(thing)]
    publish = [topic for thing in things for topic in _shadow_requests(thing, "get")]
    publish += [topic for thing in things if levels[thing] >= CONTROL
                for topic in (f"dev/{thing}/in/*", *_shadow_requests(thing, "update"))]
    return pack([
        (("iot:Connect",), [f"{arn}client/{_checked(client_id, _CLIENT_ID)}"]),
        (("iot:Subscribe",), [f"{arn}topicfilter/{topic}" for topic in readable]),
        (("iot:Receive",), [f"{arn}topic/{topic}" for topic in readable]),
        (("iot:Publish",), [f"{arn}topic/{topic}" for topic in publish]),
    ])


def device_documents(*, thing: str, region: str, account: str) -> list[str]:
    """A device connects as its thing name and owns its topics and shadow."""
    arn = _arn_prefix(region, account)
    thing = _checked(thing, _THING)
    shadow = f"$aws/things/{thing}/shadow/*"
    inbound = [f"dev/{thing}/in/*", shadow]
    documents = pack([
        (("iot:Connect",), [f"{arn}client/{thing}"]),
        (("iot:Publish",), [f"{arn}topic/dev/{thing}/out/*", f"{arn}topic/{shadow}"]),
        # Retained telemetry lets an app see the last state the moment it subscribes.
        (("iot:RetainPublish",), [f"{arn}topic/dev/{thing}/out/*"]),
        (("iot:Subscribe",), [f"{arn}topicfilter/{t}" for t in inbound]),
        (("iot:Receive",), [f"{arn}topic/{t}" for t in inbound]),
    ])
    if documents is None:  # a 128-character name still fits many times over
        raise PolicyInputError(f"{thing!r} does not fit a policy")
    return documents


def _readable(thing: str) -> tuple[str, str]:
    return f"dev/{thing}/out/*", f"$aws/things/{thing}/shadow/*"


def _shadow_requests(thing: str, operation: str) -> tuple[str, str]:
    """The classic shadow's request topic and any named shadow's."""
    return f"$aws/things/{thing}/shadow/{operation}", f"$aws/things/{thing}/shadow/name/*/{operation}"


def _arn_prefix(region: str, account: str) -> str:
    """Every resource's ARN up to its type: `{prefix}{type}/{name}`."""
    return f"arn:aws:iot:{region}:{account}:"


def _checked(name: str, pattern: re.Pattern) -> str:
    if not isinstance(name, str) or not pattern.fullmatch(name):
        raise PolicyInputError(f"{name!r} is not a thing name or client id")
    return name


# What json.dumps writes as it is: printable ASCII but the quote and the
# backslash (it escapes DEL, 0x7f, as \u007f).
_VERBATIM = re.compile(r'[ !#-\[\]-~]*')


def _quoted(resources: list[str]) -> list[str]:
    """Each resource as a JSON string, exactly as json.dumps writes it. Names
    are checked against the thing-name alphabet before they get here, so the
    quotes alone are the JSON; anything else still goes through json.dumps."""
    if _VERBATIM.fullmatch("".join(resources)):
        return [f'"{resource}"' for resource in resources]
    return [json.dumps(resource) for resource in resources]


@lru_cache(maxsize=64)
def _opening(actions: tuple[str, ...]) -> str:
    return '{"Effect":"Allow","Action":' + json.dumps(list(actions), separators=(",", ":")) + ',"Resource":['


def pack(statements: list[tuple[tuple[str, ...], list[str]]], *, max_documents: int = MAX_DOCUMENTS,
         max_characters: int = MAX_CHARACTERS) -> list[str] | None:
    """Allow statements, one per action set, filled into as few documents as
    fit; a statement too long for the document it starts in continues in the
    next. Same input, same output. None when it does not fit."""
    empty = len(_DOC_OPEN) + len(_DOC_CLOSE)
    documents: list[list[tuple[str, list[str]]]] = [[]]
    current, size = documents[-1], empty
    for actions, resources in statements:
        opening = _opening(actions)
        frame = len(opening) + len(_STATEMENT_CLOSE)  # a statement's characters besides its resources
        # The resource list this statement is filling in the current document;
        # a statement with the same actions as the one before joins it.
        run = current[-1][1] if current and current[-1][0] == opening else None
        for resource in _quoted(resources):
            extra = len(resource) + (1 if run is not None else frame + (1 if current else 0))
            if size + extra > max_characters:
                current, run, size = [], None, empty
                documents.append(current)
                extra = len(resource) + frame
                if size + extra > max_characters or len(documents) > max_documents:
                    return None
            if run is None:
                run = [resource]
                current.append((opening, run))
            else:
                run.append(resource)
            size += extra
    rendered = [
        _DOC_OPEN + ",".join(opening + ",".join(rs) + _STATEMENT_CLOSE for opening, rs in doc) + _DOC_CLOSE
        for doc in documents if doc
    ]
    # The arithmetic above is the plan; the rendered text is the contract.
    if len(rendered) > max_documents or any(len(d) > max_characters for d in rendered):
        return None
    return rendered
