"""A sans-IO MQTT 3.1.1 and 5 packet codec (docs/local-iot.md#the-broker):
bytes in, packets out, and back. It knows the wire format only; what a
packet means to AWS IoT is the broker's business."""
from local_iot.mqtt.codec import (
    MQTT5,
    MQTT311,
    ClientDecoder,
    ConnAck,
    Connect,
    Decoder,
    Disconnect,
    PacketTooLarge,
    PingReq,
    PingResp,
    PubAck,
    Publish,
    SubAck,
    Subscribe,
    Subscription,
    UnsubAck,
    Unsubscribe,
    UnsupportedProtocol,
    Will,
    encode,
)
from local_iot.mqtt.wire import MalformedPacket, ProtocolError

__all__ = [
    "MQTT5", "MQTT311", "ClientDecoder", "ConnAck", "Connect", "Decoder", "Disconnect", "MalformedPacket",
    "PacketTooLarge", "PingReq", "PingResp", "ProtocolError", "PubAck", "Publish", "SubAck", "Subscribe",
    "Subscription", "UnsubAck", "Unsubscribe", "UnsupportedProtocol", "Will", "encode",
]
