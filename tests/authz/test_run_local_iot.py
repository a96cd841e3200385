"""`manage.py run_local_iot`: local_iot gets the Lambda's environment from
Django's settings and nothing else of ours, listens where IOT_ENDPOINT
points, and starts and says where it is."""
import json
import os
import queue
import socket
import ssl
import subprocess
import sys
import threading
from pathlib import Path

import boto3
import pytest
from django.conf import settings as django_settings
from django.core.management import call_command

from authz.management.commands import run_local_iot
from authz.snapshots import outbox
from authz.tokens import credentials, rotation
from devices.models import Tenant
from lambda_bridge import handler
from local_iot import __main__ as local_iot_main
from local_iot.gateway import DEFAULT_COMPACT_AUTHORIZER_NAME
from tests.support.lambda_env import Context
from tests.support.paths import ROOT

pytestmark = pytest.mark.django_db


def test_local_iot_gets_the_lambdas_settings_and_nothing_else(settings, monkeypatch):
    monkeypatch.setenv("DEVSHARE_REFRESH_SECONDS", "5")  # left in a shell: would change the decisions
    monkeypatch.setenv("DATABASE_URL", "postgres://secret@db/x")
    settings.DYNAMODB_TABLE = "devshare-here"

    _, env = run_local_iot.command_line(hosts=["127.0.0.1"], extra=[])

    assert env["DEVSHARE_TABLE"] == "devshare-here"
    assert env["DEVSHARE_TOKEN_ISSUER"] == django_settings.IOT_TOKEN_ISSUER
    assert env["DEVSHARE_TOKEN_AUDIENCE"] == django_settings.IOT_TOKEN_AUDIENCE
    assert env["DEVSHARE_TOKEN_KEY_NAME"] == django_settings.IOT_TOKEN_KEY_NAME
    assert env["DEVSHARE_DYNAMODB_ENDPOINT_URL"] == django_settings.DYNAMODB_ENDPOINT_URL
    assert "DEVSHARE_REFRESH_SECONDS" not in env and "DATABASE_URL" not in env
    assert {name for name in env if name.startswith("DEVSHARE_")} <= {
        "DEVSHARE_TABLE", "DEVSHARE_TOKEN_ISSUER", "DEVSHARE_TOKEN_AUDIENCE", "DEVSHARE_TOKEN_KEY_NAME",
        "DEVSHARE_AWS_ACCOUNT_ID", "DEVSHARE_IOT_REGION", "DEVSHARE_DYNAMODB_ENDPOINT_URL"}


def test_a_handler_built_from_that_environment_admits_a_device_token(world, table, settings,
                                                                     django_capture_on_commit_callbacks, capsys):
    """The environment is a working one: the real handler, built from it
    alone, allows a device token the credentials service issued."""
    rotation.rotate(actor=None)
    with django_capture_on_commit_callbacks(execute=True):
        outbox.record_everyone(tenants=Tenant.objects.all())
    _, env = run_local_iot.command_line(hosts=["127.0.0.1"], extra=[])
    creds = credentials.issue_device_credentials(actor=None, device=world.lamp, by_operator=True)
    event = {"token": creds.token, "signatureVerified": True, "protocols": ["tls", "mqtt"],
             "protocolData": {"mqtt": {"username": creds.mqtt_username, "clientId": creds.client_id}},
             "connectionMetadata": {"id": "run-local-iot-test"}}
    authorizer = handler.build(env)

    assert authorizer(event, Context())["isAuthenticated"] is True, capsys.readouterr().out
    event["protocolData"]["mqtt"]["clientId"] = world.lock.thing_name
    assert authorizer(event, Context())["isAuthenticated"] is False


def test_it_listens_on_loopback_where_the_endpoint_points(settings):
    settings.IOT_ENDPOINT = "localhost:18443"
    settings.IOT_COMPACT_AUTHORIZER_NAME = "tiny-things"
    argv, _ = run_local_iot.command_line(hosts=list(run_local_iot.DEFAULT_HOSTS), extra=["--time-scale", "60"])

    assert argv[1:3] == ["-m", "local_iot"]
    assert _values(argv, "--host") == ["127.0.0.1", "::1"]
    assert _values(argv, "--tls-port") == ["18443"]
    assert _values(argv, "--authorizer-name") == [django_settings.IOT_CLIENT_AUTHORIZER_NAME]
    assert _values(argv, "--compact-authorizer-name") == ["tiny-things"]
    assert argv[-2:] == ["--time-scale", "60"]

    settings.IOT_ENDPOINT = "a1b2c3d4e5f6g7-ats.iot.eu-west-1.amazonaws.com"
    assert _values(run_local_iot.command_line(hosts=["127.0.0.1"], extra=[])[0], "--tls-port") == []


def test_print_shows_the_command_and_never_a_secret(settings, capsys):
    settings.AWS_SECRET_ACCESS_KEY = "not-for-the-screen"
    call_command("run_local_iot", "--print")

    out = capsys.readouterr().out
    assert "-m local_iot" in out and "AWS_SECRET_ACCESS_KEY" in out
    assert "not-for-the-screen" not in out


def _values(argv: list[str], option: str) -> list[str]:
    return [argv[i + 1] for i, arg in enumerate(argv) if arg == option]


@pytest.mark.parametrize("chosen", [None, "tiny-things"])
def test_make_run_starts_local_iot_answering_to_the_compact_name_django_issues(chosen):
    """run-local.sh's own export and run_local_iot line, run by bash with
    `--print`: the command passes the name Django's settings read from that
    environment, the script passes its own, and they agree, whether the
    shell chose one or not (docs/local-iot.md#in-make-run)."""
    script = (ROOT / "platform" / "run-local.sh").read_text()
    (export,) = [line for line in script.splitlines() if line.startswith("export IOT_COMPACT_AUTHORIZER_NAME=")]
    (start,) = [line for line in script.splitlines() if "manage.py run_local_iot" in line]
    # `supervise LOG PY manage.py run_local_iot ARGS…` runs `PY manage.py run_local_iot --print ARGS…`.
    supervise = 'supervise() { shift; "$1" "$2" "$3" --print "${@:4}"; }'
    program = "\n".join([f"PY={sys.executable}", supervise, export, start.rstrip().removesuffix("&")])
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.test"}
    env.pop("IOT_COMPACT_AUTHORIZER_NAME", None)
    if chosen:
        env["IOT_COMPACT_AUTHORIZER_NAME"] = chosen
    result = subprocess.run(["bash", "-c", program], cwd=ROOT, env=env, capture_output=True,  # noqa: S603, S607
                            text=True, check=True, timeout=60)
    argv = next(line for line in result.stdout.splitlines() if " -m local_iot " in line).split()

    expected = chosen or DEFAULT_COMPACT_AUTHORIZER_NAME
    assert _values(argv, "--compact-authorizer-name") == [expected, expected]  # Django's, then the script's
    assert local_iot_main.parser().parse_args(argv[3:]).compact_authorizer_name == expected


# --- live: the command, run as `make run` runs it ------------------------------------------


def test_the_command_starts_local_iot_which_says_where_it_listens(tmp_path):
    """`manage.py run_local_iot` becomes local_iot (same process), with the
    Lambda's environment only, listening where its ready line says: MQTT on
    TCP, MQTT on TLS with ALPN `mqtt` under a certificate from the CA it
    names, and a data plane on HTTP; SIGTERM stops it cleanly."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.test",
           "DYNAMODB_ENDPOINT_URL": django_settings.DYNAMODB_ENDPOINT_URL,
           "IOT_COMPACT_AUTHORIZER_NAME": "tiny-things",  # read by Django's settings, passed on by the command
           "DEVSHARE_REFRESH_SECONDS": "5"}  # left in a shell: would change the decisions
    process = subprocess.Popen(  # noqa: S603 (our own interpreter and manage.py)
        [sys.executable, str(ROOT / "manage.py"), "run_local_iot", "--host", "127.0.0.1", "--",
         "--mqtt-port", "0", "--tls-port", "0", "--http-port", "0", "--cert-dir", str(tmp_path)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout], daemon=True).start()
    try:
        ready = None
        while ready is None:
            line = lines.get(timeout=30)
            if line.startswith("local_iot ready "):
                ready = json.loads(line.removeprefix("local_iot ready "))
        ports = ready["ports"]

        assert ready["hosts"] == ["127.0.0.1"]
        assert ready["ca_file"] == str(tmp_path / "ca.pem") and (tmp_path / "ca.pem").exists()
        assert 0 not in ports.values() and len(set(ports.values())) == 3
        assert ready["mqtt"] == f"mqtt://127.0.0.1:{ports['mqtt']}"
        assert ready["mqtts"] == f"mqtts://127.0.0.1:{ports['tls']}"
        assert ready["wss"] == f"wss://127.0.0.1:{ports['tls']}/mqtt"
        # Both authorizers, under the names the credentials carry: both from
        # Django's settings, which read the unsigned one's from the environment.
        assert ready["authorizers"] == {"signed": django_settings.IOT_CLIENT_AUTHORIZER_NAME,
                                        "unsigned": "tiny-things"}
        assert ready["token_key_name"] == django_settings.IOT_TOKEN_KEY_NAME

        # It became local_iot, with the Lambda's settings and nothing else of ours.
        assert Path(f"/proc/{process.pid}/cmdline").read_bytes().split(b"\0")[1:3] == [b"-m", b"local_iot"]
        environ = dict(item.split(b"=", 1) for item in
                       Path(f"/proc/{process.pid}/environ").read_bytes().split(b"\0") if item)
        assert environ[b"DEVSHARE_TABLE"] == b"devshare-test"  # config.settings.test's table
        assert environ[b"DEVSHARE_DYNAMODB_ENDPOINT_URL"] == django_settings.DYNAMODB_ENDPOINT_URL.encode()
        assert b"DEVSHARE_REFRESH_SECONDS" not in environ and b"DJANGO_SETTINGS_MODULE" not in environ

        # MQTT over TLS, as on AWS's 443: ALPN mqtt, a certificate from its CA.
        context = ssl.create_default_context(cafile=ready["ca_file"])
        context.set_alpn_protocols(["mqtt"])
        with (socket.create_connection(("127.0.0.1", ports["tls"]), timeout=10) as raw,
              context.wrap_socket(raw, server_hostname="localhost") as tls):
            assert tls.selected_alpn_protocol() == "mqtt"
        # A CONNECT without credentials: refused by the gateway, MQTT 3.1.1's
        # CONNACK 5 (not authorized), over plain TCP.
        with socket.create_connection(("127.0.0.1", ports["mqtt"]), timeout=10) as mqtt:
            mqtt.sendall(bytes([0x10, 13, 0, 4]) + b"MQTT" + bytes([4, 0x02, 0, 30, 0, 1]) + b"x")
            assert mqtt.recv(4) == bytes([0x20, 2, 0, 5])
        # The data plane answers boto3's iot-data on HTTP.
        iot_data = boto3.client("iot-data", endpoint_url=ready["http"], region_name="us-east-1",
                                aws_access_key_id="local", aws_secret_access_key="local")
        with pytest.raises(iot_data.exceptions.ResourceNotFoundException):
            iot_data.get_thing_shadow(thingName="nobody-here")
    finally:
        process.terminate()
        code = process.wait(10)
    assert code == 0
