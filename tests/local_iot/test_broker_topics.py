"""Topic rules the broker applies (local_iot/topics.py): the matching
examples of MQTT 5 section 4.7 and AWS IoT Core's size limits
(docs/local-iot.md#the-broker)."""
import pytest

from local_iot.topics import filter_problem, matches, name_problem


@pytest.mark.parametrize(("topic_filter", "topic", "expected"), [
    # MQTT 5 4.7.1.2 and 4.7.1.3, word for word.
    ("sport/tennis/player1/#", "sport/tennis/player1", True),
    ("sport/tennis/player1/#", "sport/tennis/player1/ranking", True),
    ("sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", True),
    ("sport/#", "sport", True),
    ("sport/tennis/+", "sport/tennis/player1", True),
    ("sport/tennis/+", "sport/tennis/player1/ranking", False),
    ("sport/+", "sport", False),
    ("sport/+", "sport/", True),
    ("+/+", "/finance", True),
    ("/+", "/finance", True),
    ("+", "/finance", False),
    # 4.7.2: topics beginning with $.
    ("#", "$SYS/x", False),
    ("+/monitor/Clients", "$SYS/monitor/Clients", False),
    ("$SYS/#", "$SYS/monitor/Clients", True),
    ("$SYS/monitor/+", "$SYS/monitor/Clients", True),
    ("$aws/events/presence/+/+", "$aws/events/presence/connected/d1", True),
    # Levels are compared whole: a prefix is not a match.
    ("sport", "sports", False),
    ("sport/#", "sports/x", False),
])
def test_matching(topic_filter, topic, expected):
    assert matches(topic_filter, topic) is expected


@pytest.mark.parametrize(("topic_filter", "valid"), [
    ("#", True), ("sport/tennis/#", True), ("sport/tennis#", False), ("sport/tennis/#/ranking", False),
    ("+", True), ("+/tennis/#", True), ("sport+", False), ("sport/+/player1", True), ("", False),
])
def test_filter_validity(topic_filter, valid):
    assert (filter_problem(topic_filter) is None) is valid


@pytest.mark.parametrize(("topic", "valid"), [
    ("a/b", True), ("", False), ("a/+", False), ("a/#", False),
    ("a" + "/b" * 7, True), ("a" + "/b" * 8, False),
    ("t" * 256, True), ("t" * 257, False), ("é" * 128, True), ("é" * 129, False),
    # Basic Ingest: the $aws/rules/name/ prefix counts for neither limit.
    ("$aws/rules/r/" + "a" + "/b" * 7, True), ("$aws/rules/r/" + "a" + "/b" * 8, False),
    ("$aws/rules/r/" + "t" * 256, True),
    # Other reserved topics count in full.
    ("$aws/things/T/shadow/name/N/update/documents", True), ("$aws/things/T/shadow/name/N/update/x/y", False),
])
def test_topic_names_and_aws_limits(topic, valid):
    assert (name_problem(topic) is None) is valid
