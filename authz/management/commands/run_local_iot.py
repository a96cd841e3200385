"""`manage.py run_local_iot`: the local AWS IoT Core (docs/local-iot.md#running-it)
with the authorizer Lambda's settings taken from Django's.

local_iot never imports Django (it stands where AWS stands), so this command
only builds its command line and environment and then becomes
`python -m local_iot`: the Lambda's environment, exactly as `manage.py
authorize` builds it, and nothing else of ours. Options it does not know
are passed on to local_iot (`-- --time-scale 60`).
"""
from __future__ import annotations

import os
import sys

from django.conf import settings
from django.core.management.base import BaseCommand

from authz.management.commands.authorize import lambda_environment

DEFAULT_HOSTS = ("127.0.0.1", "::1")  # loopback only: a development stand-in, never a network service
# Of the shell's environment local_iot keeps only what a process needs to run;
# a DEVSHARE_* or AWS_* left there would make its authorizer differ from the deployed one.
PASSED_ON = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "PYTHONPATH", "SSL_CERT_FILE")


def command_line(*, hosts: list[str], extra: list[str]) -> tuple[list[str], dict[str, str]]:
    """(argv, environment) of the local_iot process."""
    argv = [sys.executable, "-m", "local_iot"]
    for host in hosts:
        argv += ["--host", host]
    # The names the credentials Django issues carry, so local_iot answers to them
    # (docs/local-iot.md#two-authorizers).
    argv += ["--authorizer-name", settings.IOT_CLIENT_AUTHORIZER_NAME,
             "--compact-authorizer-name", settings.IOT_COMPACT_AUTHORIZER_NAME,
             "--token-key-name", settings.IOT_TOKEN_KEY_NAME]
    port = endpoint_port()
    if port is not None:
        # The port the credentials name (IOT_ENDPOINT) is the one listened on.
        argv += ["--tls-port", str(port)]
    argv += extra
    env = {name: os.environ[name] for name in PASSED_ON if name in os.environ}
    env.update(lambda_environment())
    return argv, env


def endpoint_port() -> int | None:
    """The port of IOT_ENDPOINT when it names one (`localhost:18443`); AWS's
    endpoints name none (443)."""
    host, sep, port = settings.IOT_ENDPOINT.rpartition(":")
    return int(port) if sep and host and port.isdigit() else None


class Command(BaseCommand):
    help = "Run the local AWS IoT Core (local_iot) with the authorizer Lambda's settings from Django's."

    def add_arguments(self, parser):
        parser.add_argument("--host", action="append", dest="hosts",
                            help=f"Address to listen on; repeat for more (default: {' and '.join(DEFAULT_HOSTS)}).")
        parser.add_argument("--print", action="store_true", dest="print_only",
                            help="Print the command line and the names of the variables it gets, and run nothing.")
        parser.add_argument("extra", nargs="*",
                            help="Passed on to `python -m local_iot` (after `--`): --mqtt-port, --tls-port, "
                                 "--http-port, --cert-dir, --time-scale; an option given here wins over ours.")

    def handle(self, *args, hosts=None, print_only=False, extra=(), **options):
        argv, env = command_line(hosts=hosts or list(DEFAULT_HOSTS), extra=list(extra))
        if print_only:
            self.stdout.write(" ".join(argv))
            self.stdout.write("environment: " + " ".join(sorted(env)))
            return
        sys.stdout.flush()
        sys.stderr.flush()
        # Become local_iot rather than wait for it: a supervisor's signals reach it directly.
        os.chdir(settings.BASE_DIR)
        os.execve(sys.executable, argv, env)  # noqa: S606 (our own interpreter, a fixed argv: no shell wanted)
