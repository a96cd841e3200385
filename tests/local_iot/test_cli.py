"""`python -m local_iot` as `make run` starts it (docs/local-iot.md#running-it)."""
import json
import os
import signal
import socket
import ssl
import subprocess
import sys

import pytest

from local_iot.broker import Broker
from tests.support.lambda_env import lambda_env
from tests.support.paths import ROOT


def local_iot(*args, env=None, **options) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "local_iot", *args], cwd=ROOT, capture_output=True, text=True,
                          env=env or {"PATH": os.environ["PATH"]}, timeout=60, check=False, **options)


def test_help_documents_every_option_and_its_default():
    result = local_iot("--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    for option, default in (("--host", "127.0.0.1 and ::1"), ("--mqtt-port", "18830"), ("--tls-port", "18443"),
                            ("--http-port", "18080"), ("--cert-dir", "build/local_iot"), ("--time-scale", "1.0"),
                            ("--authorizer-name", "devshare"), ("--compact-authorizer-name", "devshare-compact"),
                            ("--token-key-name", "devshare-token")):
        assert option in text and default in text, option
    assert "DEVSHARE_TABLE" in text and "local_iot ready" in text


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.1", "example.com"])  # noqa: S104 - refused, never bound
def test_only_loopback_addresses_are_accepted(host):
    result = local_iot("--host", host)
    assert result.returncode == 2 and "not a loopback address" in result.stderr


def test_what_it_runs_imports_no_django_and_none_of_the_platform():
    # It stands where AWS stands: lambda_bridge and libraries only.
    code = ("import sys, runpy; sys.argv = ['local_iot', '--help']\n"
            "try:\n    runpy.run_module('local_iot', run_name='__main__')\nexcept SystemExit:\n    pass\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'django', 'devices', 'authz', 'config', "
            "'rest_framework'}), file=sys.stderr)")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,  # noqa: S603
                            env={"PATH": os.environ["PATH"]}, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip().splitlines()[-1] == "[]"


def test_the_two_authorizers_must_have_two_names():
    result = local_iot("--authorizer-name", "one", "--compact-authorizer-name", "one")
    assert result.returncode == 2 and "must differ" in result.stderr


def test_a_time_scale_must_be_positive():
    result = local_iot("--time-scale", "0")
    assert result.returncode == 2 and "above 0" in result.stderr


def _broker_is_built() -> bool:
    try:
        Broker(gateway=None, region="eu-west-1", account="123456789012")
    except NotImplementedError:
        return False
    return True


@pytest.mark.skipif(not _broker_is_built(), reason="the broker part of issue 14 is not merged yet")
def test_it_announces_its_urls_when_ready_and_stops_on_sigterm(table, dynamodb_endpoint, tmp_path):
    env = {"PATH": os.environ["PATH"], **lambda_env(table.name, dynamodb_endpoint)}
    process = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "local_iot", "--host", "127.0.0.1", "--mqtt-port", "0", "--tls-port", "0",
         "--http-port", "0", "--cert-dir", str(tmp_path / "certs"), "--compact-authorizer-name", "tiny-things"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ready = None
        for line in process.stdout:
            if line.startswith("local_iot ready "):
                ready = json.loads(line.removeprefix("local_iot ready "))
                break
        assert ready is not None, process.stderr.read()
        ports = ready["ports"]
        assert ready["mqtt"] == f"mqtt://127.0.0.1:{ports['mqtt']}"
        assert ready["wss"] == f"wss://127.0.0.1:{ports['tls']}/mqtt"
        assert ready["http"] == f"http://127.0.0.1:{ports['http']}"
        assert ready["ca_file"] == str(tmp_path / "certs" / "ca.pem")
        # Both authorizers, as clients name them: the signed one by default.
        assert ready["authorizers"] == {"signed": "devshare", "unsigned": "tiny-things"}
        assert ready["token_key_name"] == "devshare-token"
        table = "".join(next(process.stdout) for _ in range(10))
        assert "'devshare' (signing on" in table and "'tiny-things' (signing disabled" in table
        # The CA it names is the one its TLS listener's certificate chains to.
        context = ssl.create_default_context(cafile=ready["ca_file"])
        with socket.create_connection(("127.0.0.1", ports["tls"]), timeout=10) as raw, \
                context.wrap_socket(raw, server_hostname="localhost") as tls:
            assert tls.version()
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        process.stdout.close()
        process.stderr.close()
