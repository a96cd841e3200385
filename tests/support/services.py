"""Services a test needs (PostgreSQL, Redis, redis-server, Chromium, the package index)."""
import os

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"


def require(available: bool, what: str) -> None:
    """In CI a missing service fails the run; elsewhere the test is skipped, saying why."""
    if available:
        return
    if IN_CI:
        pytest.fail(f"{what} is required in CI but is not available")
    pytest.skip(f"{what} is not available on this machine")
