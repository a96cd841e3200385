"""The REST API, version 1. Views are thin: they find the objects the caller
can see (``selectors``), validate input (``serializers``) and call
``devices.services`` for every write, which checks rights and audits.

The base views (``ApiView``, ``TenantView``: tenant paths, 404 on anything
unseen) are shared with authz's API and live in ``config.api.views``.
"""
import re
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db.models import Prefetch
from django.shortcuts import get_object_or_404
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, PolymorphicProxySerializer, extend_schema
from rest_framework import generics, status
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.response import Response
from rest_framework_simplejwt import views as jwt_views
from rest_framework_simplejwt.settings import api_settings as jwt_settings
from rest_framework_simplejwt.tokens import AccessToken, UntypedToken

from config.api.errors import LockedOut
from config.api.throttling import ScopedWriteThrottle
from config.api.views import ApiView, TenantView
from devices import access, schedules, services, signin
from devices import selectors as domain
from devices.errors import DomainError, ErrorCode
from devices.models import AuditEvent, Device, DeviceGroup, DeviceType, Invitation, Membership, Share, Tenant, User

from . import filters, selectors
from . import serializers as s
from .permissions import may_oversee, may_share, require


class DeviceRendering:
    # For views that answer with a device they just changed. A comment, not a
    # docstring: drf-spectacular would take it as the operations' description.

    def render_device(self, device: Device) -> dict:
        """The device as the caller now sees it (their level may have changed)."""
        fresh = domain.devices_for(user=self.request.user, tenant=self.tenant).filter(pk=device.pk).first()
        if fresh is None:  # e.g. just transferred away
            device.access_level = None
            fresh = device
        return s.DeviceSerializer(fresh, context=self.get_serializer_context()).data


class SharesThrottled:
    throttle_classes = [ScopedWriteThrottle]
    throttle_scope = "shares"


# --- auth --------------------------------------------------------------------------


class AuthThrottled:
    throttle_classes = [ScopedWriteThrottle]
    throttle_scope = "auth"


@extend_schema(tags=["auth"], summary="Sign in with email and password",
               request=s.LoginSerializer, responses={200: s.TokenPairSerializer})
class LoginView(AuthThrottled, jwt_views.TokenObtainPairView):
    serializer_class = s.LoginSerializer

    def post(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        try:
            serializer.is_valid(raise_exception=True)
        except AuthenticationFailed:
            # axes flags the request when this account or address is locked
            # out; the right password is refused then too (its backend runs first).
            if getattr(request, "axes_locked_out", False):
                raise LockedOut(wait=settings.AXES_COOLOFF_TIME.total_seconds()) from None
            raise
        signin.record_sign_in(user=serializer.user)
        return Response(serializer.validated_data, status=status.HTTP_200_OK)


@extend_schema(tags=["auth"], summary="Trade a refresh token for a new pair (the old one stops working)",
               request=s.RefreshSerializer, responses={200: s.TokenPairSerializer})
class RefreshView(AuthThrottled, jwt_views.TokenRefreshView):
    def post(self, request, *args, **kwargs):
        response = super().post(request, *args, **kwargs)
        signin.record_token_refresh(user_id=AccessToken(response.data["access"])[jwt_settings.USER_ID_CLAIM])
        return response


@extend_schema(tags=["auth"], summary="Sign out: the refresh token stops working",
               request=s.RefreshSerializer, responses={204: None})
class LogoutView(AuthThrottled, jwt_views.TokenBlacklistView):
    def post(self, request, *args, **kwargs):
        super().post(request, *args, **kwargs)
        # Valid (super() checked it) and now blacklisted: read it untyped.
        signin.record_sign_out(user_id=UntypedToken(request.data["refresh"]).get(jwt_settings.USER_ID_CLAIM))
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- me, tenants, invitations addressed to me ---------------------------------------


@extend_schema(tags=["me"], summary="Your profile and memberships")
class MeView(ApiView):
    serializer_class = s.MeSerializer

    def get(self, request):
        me = User.objects.prefetch_related(
            Prefetch("memberships", Membership.objects.select_related("tenant").order_by("tenant__name"))
        ).get(pk=request.user.pk)
        return Response(s.MeSerializer(me).data)


class RolesContext:
    def get_serializer_context(self):
        roles = dict(Membership.objects.filter(user=self.request.user).values_list("tenant_id", "role"))
        return {**super().get_serializer_context(), "roles": roles}


@extend_schema(tags=["tenants"], summary="Tenants you belong to")
class TenantListView(RolesContext, ApiView, generics.ListAPIView):
    model = Tenant
    serializer_class = s.TenantSerializer

    def scoped_queryset(self):
        return domain.tenants_for(self.request.user).order_by("name", "id")


@extend_schema(tags=["tenants"], summary="One of your tenants")
class TenantDetailView(RolesContext, TenantView):
    serializer_class = s.TenantSerializer

    def get(self, request, tenant):
        return Response(self.get_serializer(self.tenant).data)


class MyInvitations(ApiView):
    model = Invitation

    def scoped_queryset(self):
        return selectors.invitations_for(user=self.request.user).filter(email__iexact=self.request.user.email)


@extend_schema(tags=["invitations"], summary="Invitations sent to your email address, in any tenant")
class MyInvitationListView(MyInvitations, generics.ListAPIView):
    serializer_class = s.InvitationSerializer
    filterset_class = filters.InvitationFilter


@extend_schema(tags=["invitations"], summary="Accept: join the tenant if needed and receive the share",
               request=None, responses={201: s.ShareSerializer})
class InvitationAcceptView(SharesThrottled, MyInvitations):
    serializer_class = s.ShareSerializer
    documented_errors = {"post": [409]}

    def post(self, request, pk):
        invitation = self.get_object()
        share = services.accept_invitation(actor=request.user, invitation=invitation)
        return Response(s.ShareSerializer(share).data, status=status.HTTP_201_CREATED)


@extend_schema(tags=["invitations"], summary="Decline", request=None, responses={200: s.InvitationSerializer})
class InvitationDeclineView(SharesThrottled, MyInvitations):
    serializer_class = s.InvitationSerializer
    documented_errors = {"post": [409]}

    def post(self, request, pk):
        invitation = self.get_object()
        invitation = services.decline_invitation(actor=request.user, invitation=invitation)
        return Response(s.InvitationSerializer(invitation).data)


# --- device types and devices --------------------------------------------------------


@extend_schema(tags=["devices"], summary="Device types of the tenant (to register a device)")
class DeviceTypeListView(TenantView, generics.ListAPIView):
    model = DeviceType
    serializer_class = s.DeviceTypeSerializer

    def scoped_queryset(self):
        return selectors.device_types_for(user=self.request.user, tenant=self.tenant)


class DeviceListView(DeviceRendering, TenantView, generics.ListCreateAPIView):
    model = Device
    serializer_class = s.DeviceSerializer
    filterset_class = filters.DeviceFilter
    documented_errors = {"post": [409]}

    def scoped_queryset(self):
        return domain.devices_for(user=self.request.user, tenant=self.tenant)

    @extend_schema(tags=["devices"], summary="Devices you own or that are shared with you, with your level "
                   "(tenant admins see every device of the tenant)")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(tags=["devices"], summary="Register a device", request=s.DeviceCreateSerializer,
                   responses={201: s.DeviceSerializer})
    def post(self, request, tenant):
        data = self.validated(s.DeviceCreateSerializer)
        owner = None
        if data.get("owner"):
            require(domain.is_tenant_admin(user=request.user, tenant_id=self.tenant.pk),
                    "Only a tenant admin may register a device for someone else.")
            owner = selectors.member_by_email(tenant=self.tenant, email=data["owner"])
            if owner is None:
                raise ValidationError({"owner": "No member of this tenant has this email."})
        device = services.register_device(
            actor=request.user, tenant=self.tenant, name=data["name"], device_type=data["device_type"],
            owner=owner, thing_name=data.get("thing_name"), group=data.get("group"),
        )
        return Response(self.render_device(device), status=status.HTTP_201_CREATED)


@extend_schema(tags=["devices"])
class DeviceDetailView(DeviceRendering, TenantView, generics.RetrieveAPIView):
    model = Device
    serializer_class = s.DeviceSerializer
    http_method_names = ["get", "patch", "delete", "head", "options"]

    def scoped_queryset(self):
        return domain.devices_for(user=self.request.user, tenant=self.tenant)

    @extend_schema(summary="Rename (manage level, owner or tenant admin)", request=s.DeviceRenameSerializer,
                   responses={200: s.DeviceSerializer})
    def patch(self, request, tenant, pk):
        device = self.get_object()
        data = self.validated(s.DeviceRenameSerializer)
        services.rename_device(actor=request.user, device=device, name=data["name"])
        return Response(self.render_device(device))

    @extend_schema(summary="Delete (owner or tenant admin)", responses={204: None})
    def delete(self, request, tenant, pk):
        services.delete_device(actor=request.user, device=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema(tags=["devices"], summary="Hand the device to another member (owner or tenant admin); "
               "its shares are revoked unless keep_shares; the receipt says which live connections closed",
               request=s.TransferSerializer, responses={200: s.TransferredSerializer})
class DeviceTransferView(DeviceRendering, TenantView):
    model = Device
    serializer_class = s.TransferredSerializer

    def post(self, request, tenant, device):
        device = self.visible_device(device)
        data = self.validated(s.TransferSerializer)
        # Refuse first, so that only those allowed learn who is a member.
        require(domain.owns_or_administers(request.user, device),
                "Only the owner or a tenant admin may transfer a device.")
        new_owner = selectors.member_by_email(tenant=self.tenant, email=data["new_owner"])
        if new_owner is None:
            raise ValidationError({"new_owner": "No member of this tenant has this email."})
        with access.receipt() as receipt:
            device = services.transfer_device(actor=request.user, device=device, new_owner=new_owner,
                                              keep_shares=data["keep_shares"])
        return Response({**self.render_device(device), "receipt": receipt()})


# How far from now `?at=` may preview access: a year either way.
PREVIEW_RANGE = timedelta(days=366)


def preview_instant(raw: str | None, now: datetime) -> datetime:
    """The instant `?at=` names, with its UTC offset (a `+` sent unencoded
    arrives as a space); now when absent."""
    if raw is None:
        return now
    try:
        at = parse_datetime(re.sub(r" (\d{2}(:?\d{2})?)$", r"+\1", raw.strip()))
    except ValueError:
        at = None
    if at is None:
        raise ValidationError({"at": "Give an ISO 8601 date and time with its offset, like 2027-03-30T10:00+02:00."})
    if timezone.is_naive(at):
        raise DomainError(ErrorCode.NAIVE_TIME, "Times must carry a time zone.", field="at")
    if abs(at - now) > PREVIEW_RANGE:
        raise ValidationError({"at": "Access can be previewed up to a year ahead or back."})
    return at


@extend_schema(tags=["access"], summary="Your effective access to the device, what grants it and when it changes",
               parameters=[OpenApiParameter(
                   "at", OpenApiTypes.DATETIME, required=False,
                   description="Preview another instant, within a year of now; ISO 8601 with its offset "
                               "(encode + as %2B). Default: now. Today's grants are judged at that instant: "
                               "not history (docs/api.md#weekly-schedules).")],
               responses={200: s.AccessSerializer})
class DeviceAccessView(TenantView):
    model = Device
    serializer_class = s.AccessSerializer
    documented_errors = {"get": [400]}

    def get(self, request, tenant, device):
        device = self.visible_device(device)
        at = preview_instant(request.query_params.get("at"), timezone.now())
        access, next_change = domain.access_and_next_change(user=request.user, device=device, now=at)
        admin = access is None and domain.is_tenant_admin(user=request.user, tenant_id=self.tenant.pk)
        row = {**s.access_row(access, admin=admin), "in_force": access is not None, "next_change": next_change}
        return Response(s.AccessSerializer(row).data)


@extend_schema(tags=["access"], summary="Everyone with access to the device (owner, managers, tenant admins)",
               responses={200: s.AccessEntrySerializer(many=True)})
class DeviceAccessListView(TenantView):
    model = Device
    serializer_class = s.AccessEntrySerializer
    pagination_class = None  # one row per person with access: short, and computed whole
    filter_backends = []
    documented_errors = {"get": [403]}

    def get(self, request, tenant, device):
        device = self.visible_device(device)
        require(may_oversee(request.user, device), "Seeing everyone's access needs the manage level or ownership.")
        rows = [{"user": user, **s.access_row(access), "in_force": access.in_force}
                for user, access in domain.device_access_list(device=device)]
        return Response(s.AccessEntrySerializer(rows, many=True).data)


@extend_schema(tags=["audit"], summary="What happened to the device (owner, managers, tenant admins)")
class DeviceAuditView(TenantView, generics.ListAPIView):
    model = AuditEvent
    serializer_class = s.AuditEventSerializer
    filterset_class = filters.AuditEventFilter
    documented_errors = {"get": [403]}

    def scoped_queryset(self):
        device = self.visible_device(self.kwargs["device"])
        require(may_oversee(self.request.user, device), "The audit log needs the manage level or ownership.")
        return selectors.device_audit(device=device)


# --- shares --------------------------------------------------------------------------


class TargetSharesView(SharesThrottled, TenantView, generics.ListCreateAPIView):
    """Shares of one device or one group: list what you can see, or share it."""

    model = Share
    serializer_class = s.ShareSerializer
    filterset_class = filters.ShareFilter
    service_field_aliases = {"email": "grantee"}
    documented_errors = {"post": [409]}
    target_kind = ""  # "device" or "group"

    def target(self) -> Device | DeviceGroup:
        raise NotImplementedError

    def scoped_queryset(self):
        return selectors.shares_for(user=self.request.user, tenant=self.tenant).filter(
            **{self.target_kind: self.target()}
        )

    def post(self, request, *args, **kwargs):
        target = self.target()
        terms = dict(self.validated(s.ShareCreateSerializer))
        email = terms.pop("grantee")
        grantee = selectors.member_by_email(tenant=self.tenant, email=email)
        on_target = {self.target_kind: target}
        if grantee is None:
            return self.invite(target, on_target, email, terms)

        live = Share.objects.filter(**on_target, grantee=grantee, revoked_at__isnull=True)
        before = set(live.values_list("pk", flat=True))
        share = services.create_share(actor=request.user, grantee=grantee, **on_target, **terms)
        # An identical repeat returns the share it made the first time.
        code = status.HTTP_200_OK if share.pk in before else status.HTTP_201_CREATED
        return Response(s.ShareSerializer(share).data, status=code)

    def invite(self, target, on_target: dict, email: str, terms: dict) -> Response:
        user, now = self.request.user, timezone.now()
        pending = Invitation.objects.filter(**on_target, email=email.strip().lower(), status=Invitation.Status.PENDING,
                                            valid_until__gt=now)
        sent = {name: value for name, value in terms.items() if name != "schedule"}
        # Schedules compare as schedules, not as stored JSON (null is SQL NULL there).
        schedule = schedules.parse(terms.get("schedule"))
        same = next((i for i in pending.filter(invited_by=user, **sent) if schedules.of(i) == schedule), None)
        if same is not None and may_share(user, target):
            return Response(s.InvitationSerializer(same).data, status=status.HTTP_200_OK)
        invitation = services.create_invitation(actor=user, email=email, **on_target, **terms)
        return Response(s.InvitationSerializer(invitation).data, status=status.HTTP_202_ACCEPTED)


SHARE_CREATED = {
    201: OpenApiResponse(s.ShareSerializer, "The grantee is a member: the share was created."),
    200: OpenApiResponse(
        PolymorphicProxySerializer("ShareOrInvitation", [s.ShareSerializer, s.InvitationSerializer], None),
        "An identical request was made before: the existing share (or pending invitation) is returned.",
    ),
    202: OpenApiResponse(s.InvitationSerializer, "The address is not a member here: an invitation was sent."),
}


class DeviceSharesView(TargetSharesView):
    target_kind = "device"

    def target(self):
        return self.visible_device(self.kwargs["device"])

    @extend_schema(tags=["shares"], summary="Shares of the device you can see (all of them for its owner)")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(tags=["shares"], summary="Share the device with a member, or invite an email address",
                   request=s.ShareCreateSerializer, responses=SHARE_CREATED)
    def post(self, request, *args, **kwargs):
        return super().post(request, *args, **kwargs)


class GroupSharesView(TargetSharesView):
    target_kind = "group"

    def target(self):
        return self.visible_group(self.kwargs["group"])

    @extend_schema(tags=["shares"], summary="Shares of the group you can see (all of them for its owner)")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(tags=["shares"], summary="Share the group (every device in it, now and later)",
                   request=s.ShareCreateSerializer, responses=SHARE_CREATED)
    def post(self, request, *args, **kwargs):
        return super().post(request, *args, **kwargs)


@extend_schema(tags=["shares"], summary="Shares you received in this tenant")
class ReceivedShareListView(TenantView, generics.ListAPIView):
    model = Share
    serializer_class = s.ShareSerializer
    filterset_class = filters.ShareFilter

    def scoped_queryset(self):
        return selectors.shares_for(user=self.request.user, tenant=self.tenant).filter(grantee=self.request.user)


class ShareObjectView(TenantView):
    model = Share
    serializer_class = s.ShareSerializer

    def scoped_queryset(self):
        return selectors.shares_for(user=self.request.user, tenant=self.tenant)


@extend_schema(tags=["shares"])
class ShareDetailView(SharesThrottled, ShareObjectView, generics.RetrieveAPIView):
    http_method_names = ["get", "patch", "head", "options"]
    documented_errors = {"patch": [409]}

    @extend_schema(summary="Change level, window or re-sharing; only the fields sent change",
                   request=s.ShareUpdateSerializer, responses={200: s.ShareSerializer})
    def patch(self, request, tenant, pk):
        share = self.get_object()
        changes = self.validated(s.ShareUpdateSerializer)
        if changes:
            share = services.update_share(actor=request.user, share=share, **changes)
        return Response(s.ShareSerializer(share).data)


@extend_schema(tags=["shares"], summary="Revoke (or, as its grantee, leave) a share; its re-shares go too; "
               "the receipt says which live connections closed",
               request=None, responses={200: s.RevokedSerializer})
class ShareRevokeView(SharesThrottled, ShareObjectView):
    serializer_class = s.RevokedSerializer
    documented_errors = {"post": [409]}

    def post(self, request, tenant, pk):
        share = self.get_object()
        with access.receipt() as receipt:
            revoked = services.revoke_share(actor=request.user, share=share)
        return Response({"revoked": [each.pk for each in revoked], "receipt": receipt()})


# --- groups --------------------------------------------------------------------------


class GroupViewMixin(TenantView):
    model = DeviceGroup
    serializer_class = s.GroupSerializer

    def scoped_queryset(self):
        return domain.groups_for(user=self.request.user, tenant=self.tenant)

    def render_group(self, group: DeviceGroup) -> dict:
        return s.GroupSerializer(self.get_queryset().get(pk=group.pk)).data


@extend_schema(tags=["groups"])
class GroupListView(GroupViewMixin, generics.ListCreateAPIView):
    filterset_class = filters.GroupFilter
    documented_errors = {"post": [409]}

    @extend_schema(summary="Groups you own or that are shared with you (tenant admins: all)")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(summary="Create a group", responses={201: s.GroupSerializer})
    def post(self, request, tenant):
        data = self.validated(s.GroupSerializer)
        group = services.create_group(actor=request.user, tenant=self.tenant, name=data["name"])
        return Response(self.render_group(group), status=status.HTTP_201_CREATED)


@extend_schema(tags=["groups"])
class GroupDetailView(GroupViewMixin, generics.RetrieveAPIView):
    http_method_names = ["get", "patch", "delete", "head", "options"]
    documented_errors = {"patch": [409]}

    @extend_schema(summary="Rename (group owner or tenant admin)", responses={200: s.GroupSerializer})
    def patch(self, request, tenant, pk):
        group = self.get_object()
        data = self.validated(s.GroupSerializer)
        services.rename_group(actor=request.user, group=group, name=data["name"])
        return Response(self.render_group(group))

    @extend_schema(summary="Delete: its devices stay, ungrouped; its shares are revoked", responses={204: None})
    def delete(self, request, tenant, pk):
        services.delete_group(actor=request.user, group=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema(tags=["groups"], summary="Put one of the group owner's devices into the group",
               request=s.GroupDeviceSerializer, responses={200: s.DeviceSerializer})
class GroupDevicesView(DeviceRendering, TenantView):
    model = Device
    serializer_class = s.DeviceSerializer
    documented_errors = {"post": [409]}

    def post(self, request, tenant, group):
        group = self.visible_group(group)
        device = self.validated(s.GroupDeviceSerializer)["device"]
        device = services.add_device_to_group(actor=request.user, group=group, device=device)
        return Response(self.render_device(device))


@extend_schema(tags=["groups"], summary="Take a device out of the group", responses={204: None})
class GroupDeviceView(TenantView):
    model = Device
    serializer_class = s.DeviceSerializer

    def delete(self, request, tenant, group, device):
        group = self.visible_group(group)
        device = get_object_or_404(
            domain.devices_for(user=request.user, tenant=self.tenant).filter(group=group), pk=device
        )
        services.remove_device_from_group(actor=request.user, device=device)
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- invitations sent from a tenant --------------------------------------------------


class TenantInvitations(TenantView):
    model = Invitation
    serializer_class = s.InvitationSerializer

    def scoped_queryset(self):
        return selectors.invitations_for(user=self.request.user).filter(tenant=self.tenant)


@extend_schema(tags=["invitations"], summary="Invitations of this tenant you sent or received "
               "(tenant admins: all)")
class TenantInvitationListView(TenantInvitations, generics.ListAPIView):
    filterset_class = filters.InvitationFilter


@extend_schema(tags=["invitations"], summary="Cancel a pending invitation (its sender, the owner, a tenant admin)",
               request=None, responses={200: s.InvitationSerializer})
class InvitationCancelView(SharesThrottled, TenantInvitations):
    documented_errors = {"post": [409]}

    def post(self, request, tenant, pk):
        invitation = self.get_object()
        invitation = services.cancel_invitation(actor=request.user, invitation=invitation)
        return Response(s.InvitationSerializer(invitation).data)
