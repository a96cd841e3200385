"""The authorizer zip, built once a session exactly as `make lambda-zip` builds it.
The authorizer's own fixtures (`cold_start`, `signing_keys`) are tests/conftest.py's,
so the zip is tested with exactly what the handler tests use."""
import fcntl
import os
import zipfile
from pathlib import Path

import pytest

from tests.support.lambda_zip import BUILT_ZIP, run_build


@pytest.fixture(scope="session")
def authorizer_zip(tmp_path_factory) -> Path:
    """build/authorizer.zip, as `make lambda-zip` writes it. Under pytest-xdist
    the workers share one build: the first builds, the others wait on a lock
    and use its zip (two builds writing build/ at once would clash)."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        run_build()
        return BUILT_ZIP
    run_dir = tmp_path_factory.getbasetemp().parent  # this run's, shared by its workers
    with open(run_dir / "authorizer-zip.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        built = run_dir / "authorizer-zip.built"
        if not built.exists():
            run_build()
            built.touch()
    return BUILT_ZIP


@pytest.fixture(scope="session")
def unpacked_authorizer(authorizer_zip, tmp_path_factory) -> Path:
    """The zip extracted into a folder, as Lambda lays it out under /var/task."""
    folder = tmp_path_factory.mktemp("authorizer")
    with zipfile.ZipFile(authorizer_zip) as archive:
        archive.extractall(folder)
    return folder
