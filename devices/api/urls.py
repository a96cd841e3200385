"""Routes of /api/v1/. Tenant data lives under tenants/{slug}/."""
from django.urls import include, path

from . import views

tenant_patterns = [
    path("", views.TenantDetailView.as_view(), name="tenant-detail"),
    path("device-types/", views.DeviceTypeListView.as_view(), name="device-type-list"),
    path("devices/", views.DeviceListView.as_view(), name="device-list"),
    path("devices/<int:pk>/", views.DeviceDetailView.as_view(), name="device-detail"),
    path("devices/<int:device>/transfer/", views.DeviceTransferView.as_view(), name="device-transfer"),
    path("devices/<int:device>/access/", views.DeviceAccessView.as_view(), name="device-access"),
    path("devices/<int:device>/access/users/", views.DeviceAccessListView.as_view(), name="device-access-list"),
    path("devices/<int:device>/audit/", views.DeviceAuditView.as_view(), name="device-audit"),
    path("devices/<int:device>/shares/", views.DeviceSharesView.as_view(), name="device-shares"),
    path("groups/", views.GroupListView.as_view(), name="group-list"),
    path("groups/<int:pk>/", views.GroupDetailView.as_view(), name="group-detail"),
    path("groups/<int:group>/devices/", views.GroupDevicesView.as_view(), name="group-devices"),
    path("groups/<int:group>/devices/<int:device>/", views.GroupDeviceView.as_view(), name="group-device"),
    path("groups/<int:group>/shares/", views.GroupSharesView.as_view(), name="group-shares"),
    path("shares/", views.ReceivedShareListView.as_view(), name="share-list"),
    path("shares/<int:pk>/", views.ShareDetailView.as_view(), name="share-detail"),
    path("shares/<int:pk>/revoke/", views.ShareRevokeView.as_view(), name="share-revoke"),
    path("invitations/", views.TenantInvitationListView.as_view(), name="tenant-invitation-list"),
    path("invitations/<int:pk>/cancel/", views.InvitationCancelView.as_view(), name="invitation-cancel"),
]

urlpatterns = [
    path("auth/token/", views.LoginView.as_view(), name="token-obtain"),
    path("auth/token/refresh/", views.RefreshView.as_view(), name="token-refresh"),
    path("auth/logout/", views.LogoutView.as_view(), name="logout"),
    path("me/", views.MeView.as_view(), name="me"),
    path("invitations/", views.MyInvitationListView.as_view(), name="invitation-list"),
    path("invitations/<int:pk>/accept/", views.InvitationAcceptView.as_view(), name="invitation-accept"),
    path("invitations/<int:pk>/decline/", views.InvitationDeclineView.as_view(), name="invitation-decline"),
    path("tenants/", views.TenantListView.as_view(), name="tenant-list"),
    path("tenants/<slug:tenant>/", include(tenant_patterns)),
]
