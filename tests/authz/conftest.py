"""Fixtures the credentials tests borrow: API clients (with fresh throttle
counters) and the cold-started authorizer Lambda."""
from tests.api.conftest import client_for, fresh_throttles  # noqa: F401
from tests.lambda_bridge.conftest import cold_start, signing_keys  # noqa: F401
