"""The handler every test here starts: `lam`, slot A active. `cold_start`
and `signing_keys` are shared with authz and platform (tests/conftest.py);
the harness is tests/support/authorizer.py."""
import pytest

from tests.support.authorizer import Lambda


@pytest.fixture
def lam(cold_start) -> Lambda:
    """A started handler with slot A active."""
    started = cold_start()
    started.put_keyring()
    return started


@pytest.fixture(scope="session")
def compact_keys():
    """Ed25519 keys for slot A's and slot B's compact halves, and a stranger's."""
    from tests.lambda_bridge.compact_support import new_keys

    return new_keys()
