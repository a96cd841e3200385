"""authz.tokens.simulator is Django-free: it shares local_iot's gateway, which
stands where AWS stands and has no Django either."""
import subprocess
import sys
from urllib.parse import quote

from authz.tokens import simulator
from tests.support.paths import ROOT


def test_the_simulator_imports_no_django():
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import authz.tokens.simulator; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'django', 'devices', 'rest_framework'}))")
    result = subprocess.run([sys.executable, "-c", code, str(ROOT)], capture_output=True, text=True,  # noqa: S603
                            env={"PATH": "/usr/bin:/bin"}, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_an_mqtt_event_carries_the_username_and_the_verified_token():
    mqtt = simulator.connection_event(endpoint="iot.example", via="mqtt", client_id="u1.7.app", token="t.o.k",
                                      mqtt_username="devshare?x=1")
    assert mqtt["token"] == "t.o.k" and mqtt["signatureVerified"] is True
    assert mqtt["protocols"] == ["tls", "mqtt"]
    assert mqtt["protocolData"]["mqtt"] == {"username": "devshare?x=1", "clientId": "u1.7.app"}
    assert mqtt["protocolData"]["tls"] == {"serverName": "iot.example"}


def test_a_wss_event_carries_the_token_the_gateway_verified():
    # Issue 14, 7(d): a signed authorizer is always handed the token it
    # verified, so an event with signatureVerified true and no token is one
    # AWS never sends.
    query = f"x-amz-customauthorizer-name=devshare&devshare-token={quote('t.o.k')}"
    wss = simulator.connection_event(endpoint="iot.example", via="wss", client_id="u1.7.app", token="t.o.k",
                                     query_string=query)
    assert wss["token"] == "t.o.k" and wss["signatureVerified"] is True
    assert wss["protocols"] == ["tls", "http", "mqtt"]
    assert wss["protocolData"]["http"]["queryString"] == "?" + query
    assert wss["protocolData"]["mqtt"] == {"clientId": "u1.7.app"}
