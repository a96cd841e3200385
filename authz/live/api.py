"""Live access in the tenant API (docs/api.md#live-access): sign every app
out, revoke a device's credentials, revoke everything a member holds, see and
end a device's live sessions, read a receipt. Thin views over
`authz.live.services` and `authz.live.selectors`."""
import logging
from contextlib import contextmanager

from django.shortcuts import get_object_or_404
from django.urls import reverse
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response

from authz.models import AccessReceipt
from authz.tokens import iot
from config.api.throttling import ScopedThrottle, ScopedWriteThrottle
from config.api.views import TenantView
from devices.errors import DomainError, ErrorCode
from devices.models import Device, Membership

from . import receipts, selectors, services

log = logging.getLogger(__name__)


class SessionsUnavailable(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "AWS IoT cannot be asked about live connections right now; the operators have been told why."
    default_code = "iot_unavailable"


# --- receipts ---------------------------------------------------------------------


# What a narrowing did to live connections (docs/api.md#receipts).
class ReceiptSerializer(serializers.Serializer):

    id = serializers.IntegerField()
    url = serializers.SerializerMethodField(help_text="Where to read it again until it is done.")
    state = serializers.SerializerMethodField(help_text="pending until every connection it waits for is closed.")
    closed = serializers.SerializerMethodField(help_text="Live connections closed; null while pending.")
    clientIds = serializers.SerializerMethodField(help_text="The MQTT client ids closed.")  # noqa: N815
    createdAt = serializers.DateTimeField(source="created_at")  # noqa: N815
    finishedAt = serializers.DateTimeField(source="finished_at", allow_null=True)  # noqa: N815

    def get_url(self, receipt) -> str:
        return reverse("api:receipt-detail", kwargs={"tenant": receipt.tenant.slug, "pk": receipt.pk})

    @extend_schema_field(serializers.ChoiceField(choices=["pending", "done"]))
    def get_state(self, receipt) -> str:
        return "done" if receipt.done else "pending"

    def get_closed(self, receipt) -> int | None:
        return receipt.closed if receipt.done else None

    def get_clientIds(self, receipt) -> list[str]:  # noqa: N802
        return list(receipt.client_ids) if receipt.done else []


class ReceiptBodySerializer(serializers.Serializer):
    receipt = ReceiptSerializer(allow_null=True, help_text="null when nothing narrowed.")


def render_receipt(found: list[AccessReceipt]) -> dict | None:
    """The receipt a write started, as it stands now (its cuts may have run
    since), or None when the write narrowed nothing."""
    if not found:
        return None
    receipt = AccessReceipt.objects.select_related("tenant").filter(pk=found[0].pk).first()
    return ReceiptSerializer(receipt).data if receipt is not None else None


@contextmanager
def receipt_body():
    """devices.access.receipt()'s source: the receipt of the writes inside."""
    with receipts.collecting() as found:
        yield lambda: render_receipt(found)


class LiveView(TenantView):
    throttle_classes = [ScopedWriteThrottle]
    throttle_scope = "iot_credentials"

    def answering_with_receipt(self, write, **kwargs) -> Response:
        with receipt_body() as body:
            write(actor=self.request.user, **kwargs)
        return Response({"receipt": body()})


@extend_schema(tags=["iot"], summary="Sign out all your apps here: every token you hold in this tenant stops "
               "working and its live connections close", request=None, responses={200: ReceiptBodySerializer})
class SignOutAppsView(LiveView):
    serializer_class = ReceiptBodySerializer

    def post(self, request, tenant):
        return self.answering_with_receipt(services.sign_out_apps, tenant=self.tenant)


@extend_schema(tags=["iot"], summary="Revoke the device's credentials (owner or tenant admin): its tokens stop "
               "working and its live connection closes", request=None, responses={200: ReceiptBodySerializer})
class DeviceCredentialsRevokeView(LiveView):
    serializer_class = ReceiptBodySerializer
    model = Device

    def post(self, request, tenant, device):
        return self.answering_with_receipt(services.revoke_device_credentials, device=self.visible_device(device))


class MemberRevokedSerializer(serializers.Serializer):
    revoked = serializers.ListField(child=serializers.IntegerField(),
                                    help_text="Ids of every share revoked, re-shares made from them included.")
    receipt = ReceiptSerializer(allow_null=True)


@extend_schema(tags=["iot"], summary="Revoke everything this member holds in the tenant (tenant admins): every "
               "share they received and every token; they stay a member and keep what they own",
               request=None, responses={200: MemberRevokedSerializer})
class MemberRevokeAccessView(LiveView):
    serializer_class = MemberRevokedSerializer
    model = Membership

    def post(self, request, tenant, user):
        visible = Membership.objects.visible_to(request.user).filter(tenant=self.tenant)
        membership = get_object_or_404(visible, user_id=user)
        with receipt_body() as body:
            revoked = services.revoke_member_access(actor=request.user, membership=membership)
        return Response({"revoked": [share.pk for share in revoked], "receipt": body()})


@extend_schema(tags=["iot"], summary="A receipt: how many live connections a revoke closed (its actor, tenant "
               "admins)", responses={200: ReceiptSerializer})
class ReceiptDetailView(TenantView):
    serializer_class = ReceiptSerializer
    model = AccessReceipt

    def scoped_queryset(self):
        return AccessReceipt.objects.visible_to(self.request.user).filter(tenant=self.tenant).select_related("tenant")

    def get(self, request, tenant, pk):
        return Response(ReceiptSerializer(self.get_object()).data)


# --- live sessions ------------------------------------------------------------------


class SessionUserSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    email = serializers.EmailField()


class SessionSerializer(serializers.Serializer):
    clientId = serializers.CharField(source="client_id")  # noqa: N815
    kind = serializers.ChoiceField(choices=["device", "user"], help_text="The device itself, or a person's app.")
    user = SessionUserSerializer(allow_null=True, help_text="Whose app; null for the device itself.")
    connectedSince = serializers.DateTimeField(source="connected_since", allow_null=True)  # noqa: N815
    issuedAt = serializers.DateTimeField(source="issued_at", allow_null=True,  # noqa: N815
                                         help_text="When its newest live token was issued, if the platform issued one.")
    expiresAt = serializers.DateTimeField(source="expires_at", allow_null=True)  # noqa: N815


class SessionListSerializer(serializers.Serializer):
    results = SessionSerializer(many=True)


class SessionClosedSerializer(serializers.Serializer):
    closed = serializers.BooleanField(help_text="False when the session had already ended.")


class SessionsView(LiveView):
    model = Device

    @contextmanager
    def asking_aws_iot(self):
        try:
            yield
        except iot.IotError as exc:
            # The reason names endpoints and AWS's messages: for operators.
            log.error("live sessions of a device unavailable: %s", exc)
            raise SessionsUnavailable() from exc


@extend_schema(tags=["iot"], summary="Who is connected to the device right now (owner or tenant admin)",
               responses={200: SessionListSerializer})
class DeviceSessionListView(SessionsView):
    throttle_classes = [ScopedThrottle]
    throttle_scope = "iot_sessions"
    serializer_class = SessionListSerializer
    pagination_class = None  # at most selectors.MAX_CANDIDATES rows, asked of AWS IoT whole
    filter_backends = []
    documented_errors = {"get": [403, 429, 503]}

    def get(self, request, tenant, device):
        device = self.visible_device(device)
        with self.asking_aws_iot():
            sessions = selectors.device_sessions(actor=request.user, device=device)
        return Response(SessionListSerializer({"results": sessions}).data)


@extend_schema(tags=["iot"], summary="End one live session to the device (owner or tenant admin); the person "
               "may connect again: revoke to keep them out", responses={200: SessionClosedSerializer})
class DeviceSessionView(SessionsView):
    serializer_class = SessionClosedSerializer
    documented_errors = {"delete": [403, 503]}

    def delete(self, request, tenant, device, client_id):
        device = self.visible_device(device)
        try:
            with self.asking_aws_iot():
                closed = services.end_session(actor=request.user, device=device, client_id=client_id)
        except DomainError as exc:
            if exc.code == ErrorCode.NO_SUCH_SESSION:
                raise exceptions.NotFound("No such session on this device.") from exc
            raise
        return Response({"closed": closed})
