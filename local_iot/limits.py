"""The numbers the broker holds clients to (docs/local-iot.md#the-broker).

AWS's own come from its message-broker quotas,
https://docs.aws.amazon.com/general/latest/gr/iot-core.html#message-broker-limits,
and from the CONNACK properties it sends MQTT 5 clients,
https://docs.aws.amazon.com/iot/latest/developerguide/mqtt.html#mqtt5.
The ones marked "assumed" are guards of our own where AWS documents no
number: they keep one client from exhausting a developer's machine.
"""

# --- documented by AWS -------------------------------------------------------------------
MAX_PAYLOAD = 128 * 1024  # "Message size": 128 KB
MAX_CLIENT_ID_BYTES = 128
KEEP_ALIVE_RANGE = (30, 1200)  # seconds; a requested 0 gets the maximum (assumed: only the range is documented)
PERSISTENT_SESSION_EXPIRY = 3600  # the default quota, one hour
OUTBOUND_IN_FLIGHT = 100  # "Maximum outbound unacknowledged messages" per client
SUBSCRIPTIONS_PER_CONNECTION = 50  # "Subscriptions per connection" (an adjustable quota)
FILTERS_PER_SUBSCRIBE = 8  # "Maximum number of subscriptions per subscribe call"
MAXIMUM_PACKET_SIZE = 149_504  # CONNACK Maximum Packet Size, 146 KB
RECEIVE_MAXIMUM = 100  # CONNACK Receive Maximum
TOPIC_ALIAS_MAXIMUM = 8  # CONNACK Topic Alias Maximum
MAXIMUM_QOS = 1  # AWS has no QoS 2: https://docs.aws.amazon.com/iot/latest/developerguide/mqtt.html#mqtt-qos

# --- assumed: guards of our own ----------------------------------------------------------
CONNECT_TIMEOUT = 10.0  # seconds from the first byte to a complete CONNECT; not scaled (no AWS behaviour)
MAX_CONNECTIONS = 10_000  # open connections, CONNECT or not; more are closed at once
QUEUED_PER_SESSION = 1_000  # QoS 1 messages waiting beyond the in-flight window or while offline
MAX_RETAINED = 10_000  # retained topics; a new one beyond this is routed but not kept
# Bytes a connection may leave unread before it is closed as a slow consumer. Above
# OUTBOUND_IN_FLIGHT × MAXIMUM_PACKET_SIZE, so the QoS 1 window alone never reaches it.
MAX_WRITE_BUFFER = 16 * 1024 * 1024
VERDICTS_PER_GRANT = 1_024  # policy verdicts a grant remembers (gateway.Grant.can); then it starts over
REMEMBERED_CLIENTS = 10_000  # client ids whose last disconnect and version number are kept
