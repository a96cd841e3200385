"""A local stand-in for the part of AWS IoT Core Devshare relies on
(docs/local-iot.md): MQTT 3.1.1 and 5 over TCP, TLS and WebSockets, HTTPS
publish, an iot-data shaped data plane, the Device Shadow service, and the
custom-authorizer contract played against the real `lambda_bridge` handler.

Like moto for DynamoDB it is for development and tests. It imports
`lambda_bridge` and well-kept libraries only, never Django: it stands where
AWS stands.
"""
