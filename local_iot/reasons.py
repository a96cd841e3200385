"""The codes the broker answers with (docs/local-iot.md#the-broker): MQTT 5
reason codes (MQTT 5 section 2.4), MQTT 3.1.1 return codes (3.1.1 sections
3.2.2.3 and 3.9.3), and the disconnectReason names of AWS's lifecycle
events, https://docs.aws.amazon.com/iot/latest/developerguide/life-cycle-events.html
"""

# --- MQTT 5 reason codes -----------------------------------------------------------------
SUCCESS = 0x00
DISCONNECT_WITH_WILL = 0x04  # a client's DISCONNECT asking for its will anyway
NO_SUBSCRIPTION_EXISTED = 0x11
UNSPECIFIED_ERROR = 0x80
UNSUPPORTED_VERSION = 0x84
CLIENT_ID_NOT_VALID = 0x85
NOT_AUTHORIZED = 0x87
SERVER_SHUTTING_DOWN = 0x8B
KEEP_ALIVE_TIMEOUT = 0x8D
SESSION_TAKEN_OVER = 0x8E
TOPIC_FILTER_INVALID = 0x8F
TOPIC_NAME_INVALID = 0x90
TOPIC_ALIAS_INVALID = 0x94
PACKET_TOO_LARGE = 0x95
QUOTA_EXCEEDED = 0x97
ADMINISTRATIVE_ACTION = 0x98
QOS_NOT_SUPPORTED = 0x9B
SHARED_NOT_SUPPORTED = 0x9E
MAXIMUM_CONNECT_TIME = 0xA0
SUBSCRIPTION_IDS_NOT_SUPPORTED = 0xA1


def is_failure(code: int) -> bool:
    """MQTT 5 2.4: codes from 0x80 up are failures (a SUBACK's success codes are the granted QoS)."""
    return code >= UNSPECIFIED_ERROR


# --- MQTT 3.1.1 --------------------------------------------------------------------------
V3_BAD_VERSION = 0x01
V3_IDENTIFIER_REJECTED = 0x02
V3_NOT_AUTHORIZED = 0x05
V3_SUBACK_FAILURE = 0x80

# --- lifecycle disconnectReason ----------------------------------------------------------
AUTH_ERROR = "AUTH_ERROR"
CLIENT_INITIATED_DISCONNECT = "CLIENT_INITIATED_DISCONNECT"
CLIENT_ERROR = "CLIENT_ERROR"
CONNECTION_LOST = "CONNECTION_LOST"
DUPLICATE_CLIENTID = "DUPLICATE_CLIENTID"
MQTT_KEEP_ALIVE_TIMEOUT = "MQTT_KEEP_ALIVE_TIMEOUT"
SERVER_ERROR = "SERVER_ERROR"
SERVER_INITIATED_DISCONNECT = "SERVER_INITIATED_DISCONNECT"
API_INITIATED_DISCONNECT = "API_INITIATED_DISCONNECT"
CUSTOMAUTH_TTL_EXPIRATION = "CUSTOMAUTH_TTL_EXPIRATION"
THROTTLED = "THROTTLED"  # used for a slow consumer (assumed: AWS documents no reason for that)
