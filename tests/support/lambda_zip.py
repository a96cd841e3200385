"""The authorizer zip, built exactly as `make lambda-zip` builds it."""
import os
import subprocess
import sys

import pytest

from tests.support.paths import ROOT
from tests.support.services import require

BUILD_SCRIPT = ROOT / "platform" / "build_lambda_zip.py"
BUILT_ZIP = ROOT / "build" / "authorizer.zip"

# What pip prints when it cannot reach the package index, as opposed to a
# build that is wrong (a bad platform tag, an unpinned dependency).
_NETWORK_TROUBLE = (
    "NewConnectionError", "Max retries exceeded", "Temporary failure in name resolution",
    "Name or service not known", "Network is unreachable", "ConnectTimeoutError", "ReadTimeoutError",
    "ConnectionError", "SSLError", "ProxyError",
)


def run_build(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the build script with this interpreter (the venv's, as make does).
    A missing network skips outside CI and fails in CI; any other failure fails."""
    result = subprocess.run(
        [sys.executable, str(BUILD_SCRIPT), *args], cwd=ROOT, capture_output=True, text=True, timeout=600,
        env=None if env is None else {**os.environ, **env},
    )
    if result.returncode:
        output = result.stdout + result.stderr
        require(not any(marker in output for marker in _NETWORK_TROUBLE),
                "the package index (the build downloads the Lambda's wheels)")
        pytest.fail(f"build_lambda_zip.py failed (exit {result.returncode}):\n{output}")
    return result
