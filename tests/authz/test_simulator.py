"""authz.tokens.simulator is Django-free: a local AWS IoT Core will build its
events with it in a process that has no Django."""
import subprocess
import sys

from authz.tokens import simulator
from tests.support.paths import ROOT


def test_the_simulator_imports_no_django():
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import authz.tokens.simulator; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'django', 'devices', 'rest_framework'}))")
    result = subprocess.run([sys.executable, "-c", code, str(ROOT)], capture_output=True, text=True,  # noqa: S603
                            env={"PATH": "/usr/bin:/bin"}, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_events_carry_the_token_where_each_protocol_does():
    mqtt = simulator.build_event(endpoint="iot.example", via="mqtt", client_id="u1.7.app", token="t.o.k",
                                 mqtt_username="devshare?x=1")
    assert mqtt["token"] == "t.o.k" and mqtt["protocolData"]["mqtt"]["username"] == "devshare?x=1"
    wss = simulator.build_event(endpoint="iot.example", via="wss", client_id="u1.7.app", query_string="a=b")
    assert "token" not in wss and wss["protocolData"]["http"]["queryString"] == "?a=b"
    assert wss["protocolData"]["mqtt"] == {"clientId": "u1.7.app"}
