"""A Mosquitto with plain, WebSocket and TLS WebSocket listeners, and Chromium
with MQTT.js: the harness (tests/support/browser_mqtt.py) checked against a
reference broker (docs/testing.md#mqttjs-in-chromium)."""
import pytest

from tests.support import browser_mqtt
from tests.support.browser_mqtt import BrowserMqtt
from tests.support.local_ca import write_local_ca
from tests.support.mosquitto import OwnMosquitto
from tests.support.services import require


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    return write_local_ca(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def mosquitto(tls):
    require(OwnMosquitto.available(), "mosquitto")
    with OwnMosquitto(tls=(tls.cert, tls.key)) as broker:
        yield broker


@pytest.fixture(scope="module")
def browser(tls):
    """Chromium trusting the broker's certificate."""
    reason = browser_mqtt.missing()
    require(reason is None, reason or "")
    with BrowserMqtt(trust=tls.cert) as chromium:
        yield chromium
