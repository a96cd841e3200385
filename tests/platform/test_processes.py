"""platform/systemd/: web, worker and beat, each restarted whenever it stops,
running the commands this repository provides; and `make run` runs beat as
its own process, restarted like the worker."""
import configparser
import importlib
import os
import shlex
import subprocess

import pytest

from local_iot.gateway import DEFAULT_COMPACT_AUTHORIZER_NAME
from tests.support.paths import ROOT

UNITS = ROOT / "platform" / "systemd"
VENV_BIN = "/opt/devshare/.venv/bin/"


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read_string((UNITS / name).read_text())
    return parser


def exec_start(name: str) -> list[str]:
    return shlex.split(unit(name)["Service"]["ExecStart"])


def restart_policy_problems(parsed: configparser.ConfigParser) -> list[str]:
    service = parsed["Service"]
    problems = []
    if service.get("Restart") not in {"always", "on-failure"}:
        problems.append(f"Restart={service.get('Restart')}")
    if float(service.get("RestartSec", "0")) <= 0:
        problems.append("no RestartSec")
    # systemd gives up after 5 starts in 10 s unless told otherwise: a long
    # outage of the database or Redis would leave the service stopped.
    if parsed.get("Unit", "StartLimitIntervalSec", fallback=service.get("StartLimitIntervalSec")) != "0":
        problems.append("start limit")
    if "WantedBy" not in parsed["Install"]:
        problems.append("not enabled at boot")
    return problems


@pytest.mark.parametrize("name", ["devshare-web.service", "devshare-worker.service", "devshare-beat.service"])
def test_each_process_is_restarted_whenever_it_stops(name):
    assert restart_policy_problems(unit(name)) == []


def test_the_restart_check_can_fail():
    broken = unit("devshare-worker.service")
    broken["Service"]["Restart"] = "no"
    del broken["Service"]["StartLimitIntervalSec"]
    assert restart_policy_problems(broken) == ["Restart=no", "start limit"]


def test_the_set_is_exactly_web_worker_and_beat():
    assert sorted(p.name for p in UNITS.iterdir()) == [
        "devshare-beat.service", "devshare-web.service", "devshare-worker.service"]


def test_web_runs_gunicorn_on_the_projects_wsgi_application():
    argv = exec_start("devshare-web.service")
    assert argv[0] == VENV_BIN + "gunicorn"
    module, _, attribute = argv[1].partition(":")
    assert callable(getattr(importlib.import_module(module), attribute))


def test_worker_runs_the_celery_app_without_broadcast_consumers():
    argv = exec_start("devshare-worker.service")
    assert argv[:4] == [VENV_BIN + "celery", "-A", "config.celery_app", "worker"]
    assert {"--without-gossip", "--without-mingle", "--without-heartbeat"} <= set(argv)
    assert "--beat" not in argv and "-B" not in argv  # beat is its own unit: exactly one per deployment


def test_beat_runs_on_its_own_with_a_persistent_schedule():
    parsed = unit("devshare-beat.service")
    argv = exec_start("devshare-beat.service")
    assert argv[:4] == [VENV_BIN + "celery", "-A", "config.celery_app", "beat"]
    schedule = argv[argv.index("--schedule") + 1]
    assert schedule.startswith("/var/lib/" + parsed["Service"]["StateDirectory"] + "/")


def test_make_run_starts_beat_as_its_own_supervised_process():
    script = (ROOT / "platform" / "run-local.sh").read_text()
    lines = [line for line in script.replace("\\\n", " ").splitlines() if "celery -A config.celery_app" in line]
    assert len(lines) == 2, lines
    worker, beat = sorted(lines, key=lambda line: " beat " in line)
    assert " worker " in worker and "--beat" not in worker
    assert " beat " in beat
    assert all(line.lstrip().startswith("supervise ") for line in lines)


def test_make_run_gives_local_iot_and_django_the_same_compact_authorizer_name():
    """run-local.sh's own lines, run by bash with `supervise` printing what it
    would start: local_iot answers to the name Django's processes read."""
    script = (ROOT / "platform" / "run-local.sh").read_text()
    (export,) = [line for line in script.splitlines() if line.startswith("export IOT_COMPACT_AUTHORIZER_NAME=")]
    (start,) = [line for line in script.splitlines() if "manage.py run_local_iot" in line]
    program = "\n".join(["PY=python", "supervise() { shift; printf '%s\\n' \"$@\"; }", export,
                         start.rstrip().removesuffix("&"), 'echo "django=$IOT_COMPACT_AUTHORIZER_NAME"'])

    def started(**env) -> list[str]:
        result = subprocess.run(["bash", "-c", program], capture_output=True, text=True, check=True,  # noqa: S603, S607
                                env={"PATH": os.environ["PATH"], **env}, timeout=30)
        return result.stdout.splitlines()

    default = started()
    assert default[default.index("--compact-authorizer-name") + 1] == DEFAULT_COMPACT_AUTHORIZER_NAME
    assert default[-1] == f"django={DEFAULT_COMPACT_AUTHORIZER_NAME}"
    chosen = started(IOT_COMPACT_AUTHORIZER_NAME="tiny-things")
    assert chosen[chosen.index("--compact-authorizer-name") + 1] == "tiny-things"
    assert chosen[-1] == "django=tiny-things"
