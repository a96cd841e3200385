"""The built zip authorizes a real token from its own folder, the way Lambda
runs it: isolated Python, the zip's code and wheels, boto3 from "the runtime",
and no Django anywhere on the path."""
import base64
import json
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from lambda_bridge import snapshot
from lambda_bridge.schedule import Schedule, Window
from lambda_bridge.snapshot import Entry
from tests.support import compact_device
from tests.support.lambda_env import lambda_env
from tests.support.local_iot import LAMP

CHILD = """
import importlib.util, json, sys
sys.path[:0] = sys.argv[1:3]
assert importlib.util.find_spec("django") is None, "django is importable"
from lambda_bridge import handler
import cryptography
event = json.loads(sys.stdin.read())
print(json.dumps({"response": handler.lambda_handler(event, None),
                  "files": [handler.__file__, cryptography.__file__]}))
"""


def boto3_runtime(folder: Path) -> Path:
    """What the python3.12 Lambda runtime provides: boto3 and its dependencies
    only, linked from this virtualenv into a folder of their own."""
    folder.mkdir()
    pending, seen = ["boto3"], set()
    while pending:
        dist = metadata.distribution(pending.pop())
        if dist.name.lower() in seen:
            continue
        seen.add(dist.name.lower())
        tops = {Path(str(f)).parts[0] for f in dist.files or ()} - {".."}
        for top in tops:
            source = Path(dist.locate_file(top))
            if not top.endswith((".dist-info", ".pth")) and source.exists() and not (folder / top).exists():
                (folder / top).symlink_to(source)
        for requirement in dist.requires or ():
            if "extra ==" not in requirement:
                pending.append(re.match(r"[A-Za-z0-9._-]+", requirement)[0])
    return folder


def test_the_unpacked_zip_authorizes_a_token_without_django(unpacked_authorizer, tmp_path, cold_start):
    lam = cold_start()  # the table, keys and a token, made by the test's own (Django-side) tools
    lam.put_keyring()
    lam.put_snapshot(principal="7", entries=[Entry("d-lamp00000001", snapshot.CONTROL)])
    event = lam.event("signed_browser_wss_query", lam.token())
    env = {**lambda_env(lam.table.name, lam.handler.config.endpoint_url), "PATH": "/usr/bin:/bin"}

    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", CHILD, str(unpacked_authorizer), str(boto3_runtime(tmp_path / "rt"))],
        input=json.dumps(event), capture_output=True, text=True, env=env, timeout=60,
    )

    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["response"]["isAuthenticated"] is True, result.stdout
    assert all(Path(f).is_relative_to(unpacked_authorizer) for f in answer["files"]), answer["files"]
    log = json.loads(result.stdout.strip().splitlines()[-2])
    assert log["decision"] == "allow" and log["source"] == "token" and log["credential"] == "signed"


def test_the_unpacked_zip_verifies_a_compact_device_token_without_django(unpacked_authorizer, tmp_path, cold_start):
    """What the unsigned authorizer sends: no `token`, signatureVerified false,
    the compact token as the MQTT password, which the zip verifies alone."""
    lam = cold_start()
    key = compact_device.CompactKey()
    compact_device.publish(lam, key)
    compact_device.device_snapshot(lam)
    token = key.token()
    event = {"signatureVerified": False, "protocols": ["tls", "mqtt"],
             "protocolData": {"mqtt": {"username": compact_device.mqtt_username(), "clientId": LAMP,
                                       "password": base64.b64encode(token.encode()).decode()}},
             "connectionMetadata": {"id": "zip-compact"}}

    result = run_zip(unpacked_authorizer, lam, tmp_path, event, CHILD)

    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["response"]["isAuthenticated"] is True, result.stdout
    log = json.loads(result.stdout.strip().splitlines()[-2])
    assert (log["credential"], log["source"], log["decision"]) == ("compact", "mqtt_password", "allow")


ZONES_CHILD = """
import json, sys, zoneinfo
sys.path[:0] = sys.argv[1:3]
assert zoneinfo.TZPATH == (), zoneinfo.TZPATH
from lambda_bridge import handler
import tzdata
event = json.loads(sys.stdin.read())
print(json.dumps({"response": handler.lambda_handler(event, None), "tzdata": tzdata.__file__}))
"""
# In force at every hour of the week, so the answer does not depend on when the test runs;
# reading it still takes the zone's rules.
EVERY_HOUR = Schedule("Europe/Brussels", (Window(frozenset(range(7)), 0, 1440),))


def run_zip(folder: Path, lam, tmp_path, event, child: str = ZONES_CHILD) -> subprocess.CompletedProcess:
    """The handler from `folder` with no system time-zone database: PYTHONTZPATH
    empty leaves zoneinfo only the tzdata package, as on a runtime without
    /usr/share/zoneinfo."""
    env = {**lambda_env(lam.table.name, lam.handler.config.endpoint_url), "PATH": "/usr/bin:/bin", "PYTHONTZPATH": ""}
    return subprocess.run(
        [sys.executable, "-I", "-S", "-c", child, str(folder), str(boto3_runtime(tmp_path / "rt"))],
        input=json.dumps(event), capture_output=True, text=True, env=env, timeout=60,
    )


def test_the_zip_reads_a_schedule_without_a_system_time_zone_database(unpacked_authorizer, tmp_path, cold_start):
    lam = cold_start()
    lam.put_keyring()
    lam.put_snapshot(principal="7", entries=[Entry("d-lamp00000001", snapshot.CONTROL, schedule=EVERY_HOUR)])

    result = run_zip(unpacked_authorizer, lam, tmp_path, lam.event("signed_browser_wss_query", lam.token()))

    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["response"]["isAuthenticated"] is True, result.stdout
    assert any("d-lamp00000001" in document for document in answer["response"]["policyDocuments"])
    assert Path(answer["tzdata"]).is_relative_to(unpacked_authorizer)


def test_without_its_tzdata_the_zip_refuses_a_scheduled_principal_as_a_bad_snapshot(unpacked_authorizer, tmp_path,
                                                                                   cold_start):
    # The control: the same zip minus tzdata has no way to read the zone, and refuses rather than guess.
    stripped = tmp_path / "stripped"
    stripped.mkdir()
    for entry in unpacked_authorizer.iterdir():
        if not entry.name.startswith("tzdata"):
            (stripped / entry.name).symlink_to(entry)
    lam = cold_start()
    lam.put_keyring()
    lam.put_snapshot(principal="7", entries=[Entry("d-lamp00000001", snapshot.CONTROL, schedule=EVERY_HOUR)])
    child = ZONES_CHILD.replace("import tzdata\n", "").replace(', "tzdata": tzdata.__file__', "")

    result = run_zip(stripped, lam, tmp_path, lam.event("signed_browser_wss_query", lam.token()), child)

    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert json.loads(lines[-1])["response"]["isAuthenticated"] is False
    assert json.loads(lines[-2])["reason"] == "bad_snapshot"
