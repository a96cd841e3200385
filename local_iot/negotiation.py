"""What a client's CONNECT, SUBSCRIBE and PUBLISH are answered with, as
functions of the packet and the connection (docs/local-iot.md#the-broker):
the keep-alive, the session expiry, CONNACK's properties, a filter's SUBACK
code, a PUBLISH's topic and whether it may be published.

AWS's numbers are in local_iot/limits.py; MQTT 5's CONNACK properties as
AWS sends them: https://docs.aws.amazon.com/iot/latest/developerguide/mqtt.html#mqtt5
"""
from __future__ import annotations

from local_iot import limits, topics
from local_iot import reasons as r
from local_iot.connection import Connection
from local_iot.mqtt import MQTT5, Connect, ProtocolError, Publish, Subscription


def keep_alive_for(requested: int) -> int:
    """AWS's range; a requested 0 gets the maximum (assumed)."""
    low, high = limits.KEEP_ALIVE_RANGE
    return high if requested == 0 else min(max(requested, low), high)


def session_expiry_for(c: Connect) -> float:
    """AWS seconds the session outlives the connection, capped at AWS's quota."""
    if c.version == MQTT5:
        return min(c.properties.get("session_expiry_interval", 0), limits.PERSISTENT_SESSION_EXPIRY)
    return 0 if c.clean_start else limits.PERSISTENT_SESSION_EXPIRY


def take_client_options(conn: Connection, c: Connect) -> None:
    """What the client asked for that shapes what it is sent (MQTT 5 3.1.2.11)."""
    conn.max_packet_out = c.properties.get("maximum_packet_size")
    conn.window = min(c.properties.get("receive_maximum", limits.OUTBOUND_IN_FLIGHT), limits.OUTBOUND_IN_FLIGHT)
    conn.problems = c.properties.get("request_problem_information", 1) == 1


def connack_properties(c: Connect, *, keep_alive: int, assigned: str | None, session_expiry: float) -> dict:
    if c.version != MQTT5:
        return {}
    properties = {"receive_maximum": limits.RECEIVE_MAXIMUM, "maximum_qos": limits.MAXIMUM_QOS,
                  "retain_available": 1, "maximum_packet_size": limits.MAXIMUM_PACKET_SIZE,
                  "topic_alias_maximum": limits.TOPIC_ALIAS_MAXIMUM, "wildcard_subscription_available": 1,
                  "subscription_identifier_available": 0, "shared_subscription_available": 0}
    if keep_alive != c.keep_alive:
        properties["server_keep_alive"] = keep_alive
    if assigned:
        properties["assigned_client_identifier"] = assigned
    if c.properties.get("session_expiry_interval", 0) > session_expiry:
        properties["session_expiry_interval"] = int(session_expiry)
    return properties


def subscription_code(conn: Connection, sub: Subscription, index: int) -> int:
    """The SUBACK code for the index-th filter of a SUBSCRIBE: the granted QoS, or a failure."""
    failure = None
    if topics.filter_problem(sub.filter):
        failure = r.TOPIC_FILTER_INVALID
    elif sub.filter.startswith("$share/"):
        failure = r.SHARED_NOT_SUPPORTED
    elif index >= limits.FILTERS_PER_SUBSCRIBE or (
            sub.filter not in conn.session.subscriptions
            and len(conn.session.subscriptions) >= limits.SUBSCRIPTIONS_PER_CONNECTION):
        failure = r.QUOTA_EXCEEDED  # AWS's quotas; the code is assumed
    elif not conn.grant.can("iot:Subscribe", sub.filter):
        # https://docs.aws.amazon.com/iot/latest/developerguide/mqtt.html#mqtt5-reason-codes:
        # 0x87 on SUBACK in MQTT 5; 3.1.1 has only the failure code 0x80.
        failure = r.NOT_AUTHORIZED
    if failure is not None:
        return failure if conn.v5 else r.V3_SUBACK_FAILURE
    return min(sub.qos, limits.MAXIMUM_QOS)  # QoS 2 is granted as QoS 1 (assumed; AWS has no QoS 2)


class Malformed(Exception):
    """A PUBLISH that ends the connection: `code` for an MQTT 5 DISCONNECT, `why` its reason string."""

    def __init__(self, code: int, why: str):
        super().__init__(why)
        self.code, self.why = code, why


def publish_topic(conn: Connection, p: Publish) -> str:
    """The topic a client's PUBLISH is on, its alias resolved, once the packet
    is within AWS's limits; Malformed otherwise (lifecycle reason CLIENT_ERROR)."""
    topic = p.topic
    alias = p.properties.get("topic_alias")
    if alias is not None:
        if not 1 <= alias <= limits.TOPIC_ALIAS_MAXIMUM:
            raise Malformed(r.TOPIC_ALIAS_INVALID, f"topic alias {alias}")
        if topic:
            conn.aliases[alias] = topic
        elif alias in conn.aliases:
            topic = conn.aliases[alias]
        else:
            raise Malformed(ProtocolError.code, f"unknown topic alias {alias}")
    if p.qos > limits.MAXIMUM_QOS:
        # AWS does not support QoS 2 (https://docs.aws.amazon.com/iot/latest/developerguide/mqtt.html#mqtt-qos);
        # closing the connection is assumed. MQTT 5 3.3.1-4 names the reason code.
        raise Malformed(r.QOS_NOT_SUPPORTED, "AWS IoT does not support QoS 2")
    problem = topics.name_problem(topic)
    if problem:
        raise Malformed(r.TOPIC_NAME_INVALID, f"topic name: {problem}")
    if len(p.payload) > limits.MAX_PAYLOAD:
        # CLIENT_ERROR, "Message payload exceeds size limit for message type"
        # (https://docs.aws.amazon.com/iot/latest/developerguide/topicdata.html).
        raise Malformed(r.PACKET_TOO_LARGE, f"payload over {limits.MAX_PAYLOAD} bytes")
    return topic


def may_publish(conn: Connection, topic: str, retain: bool) -> bool:
    """iot:Publish (and iot:RetainPublish when retained), on a topic clients may publish on."""
    return topics.client_may_publish(topic) and conn.grant.can("iot:Publish", topic) and (
        not retain or conn.grant.can("iot:RetainPublish", topic))
