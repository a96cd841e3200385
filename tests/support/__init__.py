"""Helpers the test packages share, importable as plain modules.

Fixtures live in conftest files (the ones several test packages use, once, in
tests/conftest.py); what a fixture or a test builds on lives here, so no test
imports a conftest or another test module (tests/test_architecture.py checks).

- services.py: `require` (skip, or fail in CI, when a service is missing), `IN_CI`
- paths.py: `ROOT`, the repository
- world.py: `World`, one tenant with its people and devices
- snapshot_table.py: `SnapshotTable`, the reader the `table` fixture returns
- api.py: `url`, `tenant_url`, `assert_error`, `rates`
- processes.py: processes of the test's own (redis-server, moto, Celery) and `wait_until`
- celery_settings.py: the settings of the Celery processes a test starts
- lambda_env.py: the authorizer's environment, identity constants, `SigningKey`, `Context`
- authorizer.py: `Lambda`, a cold-started handler and the means to feed it; `assert_contract`
- lambda_zip.py: `run_build`, the authorizer zip built as `make lambda-zip` builds it
- mosquitto.py: `OwnMosquitto`, a reference broker of the test's own (MQTT, ws, wss), Django-free
- local_ca.py: `write_local_ca`, a throw-away CA and a loopback server certificate
- browser_mqtt.py: `BrowserMqtt`, MQTT.js in Chromium driven through Playwright (docs/testing.md#mqttjs-in-chromium)
- ports.py: `free_port`, `listening`, for servers of the test's own, Django-free
- event_loop.py: `LoopThread`, an asyncio loop on a background thread for the servers under test
- local_iot.py: `RunningLocalIot`, `RunningListeners`, tokens as clients present them (docs/testing.md#live-mqtt)
- broker_server.py, policy_gateway.py: the broker and data plane behind real listeners, with exact policies
- mqtt_client.py: the paho-mqtt `Client`, the AWS IoT Device SDK's `SdkClient`, `RawClient` for raw bytes
"""
