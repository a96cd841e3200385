"""Topic names, topic filters, and AWS IoT Core's limits on them
(docs/local-iot.md#the-broker).

Matching follows MQTT (3.1.1 section 4.7, MQTT 5 section 4.7): `+` is one
whole level, `#` the rest (including the parent level itself), and a
filter beginning with a wildcard does not match a topic beginning with `$`.

AWS limits (https://docs.aws.amazon.com/general/latest/gr/iot-core.html#message-broker-limits):
a topic or topic filter is at most 256 bytes of UTF-8 and has at most 7
forward slashes. Both limits exclude the first three mandatory segments of
a Basic Ingest topic (`$aws/rules/rule-name/`). Reserved topics such as
shadow topics count like any other: the longest named-shadow topic,
`$aws/things/T/shadow/name/N/update/documents`, has exactly 7 slashes.

Some reserved topics are AWS's to publish on and a client's only to
subscribe to ("Client operations allowed: Subscribe" on
https://docs.aws.amazon.com/iot/latest/developerguide/reserved-topics.html):
the Device Shadow service's answers and the lifecycle events. The page
warns that an unsupported publish "can result in a terminated connection";
the broker treats it as a publish the policy does not allow.
"""
from __future__ import annotations

import re

MAX_TOPIC_BYTES = 256
MAX_SLASHES = 7
_BASIC_INGEST = re.compile(r"\$aws/rules/[^/]+/", re.IGNORECASE)
_SUBSCRIBE_ONLY = re.compile(
    r"\$aws/things/[^/]+/shadow(/name/[^/]+)?/"
    r"((get|update|delete)/(accepted|rejected)|update/(delta|documents))"
    r"|\$aws/events/.*")


def _counted(topic: str) -> str:
    """The part of a topic AWS's length and slash limits apply to."""
    prefix = _BASIC_INGEST.match(topic)
    return topic[prefix.end():] if prefix else topic


def limit_problem(topic: str) -> str | None:
    """Why AWS would refuse this topic or filter for its size, or None."""
    counted = _counted(topic)
    if len(counted.encode("utf-8")) > MAX_TOPIC_BYTES:
        return f"longer than {MAX_TOPIC_BYTES} bytes"
    if counted.count("/") > MAX_SLASHES:
        return f"more than {MAX_SLASHES} slashes"
    return None


def name_problem(topic: str) -> str | None:
    """Why this is not a topic a PUBLISH may name, or None."""
    if not topic:
        return "empty topic"
    if "+" in topic or "#" in topic:
        return "wildcard in a topic name"
    return limit_problem(topic)


def client_may_publish(topic: str) -> bool:
    """False for a reserved topic only AWS publishes on (see the module's docstring)."""
    return _SUBSCRIBE_ONLY.fullmatch(topic) is None


def filter_problem(topic_filter: str) -> str | None:
    """Why this is not a valid topic filter, or None."""
    if not topic_filter:
        return "empty topic filter"
    levels = topic_filter.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            return "# must be a whole last level"
        if "+" in level and level != "+":
            return "+ must be a whole level"
    return limit_problem(topic_filter)


def matches(topic_filter: str, topic: str) -> bool:
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    f_levels, t_levels = topic_filter.split("/"), topic.split("/")
    for i, level in enumerate(f_levels):
        if level == "#":
            return True
        if i >= len(t_levels) or (level != "+" and level != t_levels[i]):
            return False
    return len(f_levels) == len(t_levels)
