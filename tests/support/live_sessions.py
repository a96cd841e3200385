"""A real IotGateway whose iot-data client is held by botocore's Stubber,
for the live-sessions services, API and console (docs/api.md#live-sessions)."""
import uuid
from datetime import UTC, datetime, timedelta

import boto3
from botocore.stub import Stubber
from django.utils import timezone

from authz.models import IssuedCredential
from authz.tokens.iot import IotGateway

CONNECTED_SINCE = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)


class StubbedDataPlane:
    """`gateway` answers GetConnection/DeleteConnection as queued on `stub`;
    `expect_*` queue an answer for exactly that request."""

    def __init__(self):
        self.client = boto3.client("iot-data", region_name="us-east-1", endpoint_url="https://data.iot.test",
                                   aws_access_key_id="testing", aws_secret_access_key="testing")  # noqa: S106
        self.stub = Stubber(self.client)
        self.gateway = IotGateway(client=None, data_client=self.client)

    def expect_connected(self, client_id: str) -> None:
        self.stub.add_response("get_connection", {
            "clientId": client_id, "connected": True,
            "connectedSince": int(CONNECTED_SINCE.timestamp() * 1000)}, {"clientId": client_id})

    def expect_disconnected(self, client_id: str) -> None:
        self.stub.add_response("get_connection", {"clientId": client_id, "connected": False},
                               {"clientId": client_id})

    def expect_unknown(self, client_id: str, operation: str = "get_connection") -> None:
        self.stub.add_client_error(operation, service_error_code="ResourceNotFoundException", http_status_code=404,
                                   expected_params=self._params(operation, client_id))

    def expect_failure(self, client_id: str, operation: str = "get_connection") -> None:
        self.stub.add_client_error(operation, service_error_code="InternalFailureException", http_status_code=500,
                                   expected_params=self._params(operation, client_id))

    def expect_delete(self, client_id: str) -> None:
        self.stub.add_response("delete_connection", {}, self._params("delete_connection", client_id))

    @staticmethod
    def _params(operation: str, client_id: str) -> dict:
        if operation == "delete_connection":
            return {"clientId": client_id, "cleanSession": True, "preventWillMessage": True}
        return {"clientId": client_id}


def issued(*, tenant, kind: str, principal: str, client_id: str, scope=None, issued_at=None, lifetime_s=3600,
           issued_by=None):
    """An IssuedCredential row as issuance records it (the token itself is never kept)."""
    issued_at = issued_at or timezone.now()
    return IssuedCredential.objects.create(
        tenant=tenant, kind=kind, principal=principal, client_id=client_id, jti=uuid.uuid4().hex, kid="kid-test",
        scope=scope, issued_by=issued_by, issued_at=issued_at, expires_at=issued_at + timedelta(seconds=lifetime_s))
