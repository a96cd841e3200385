"""authz's routes under /api/v1/ (included by config/api_router.py, namespace "api")."""
from django.urls import path

from . import api
from .live import api as live

urlpatterns = [
    path("tenants/<slug:tenant>/iot/credentials/", api.UserCredentialsView.as_view(), name="iot-credentials"),
    path("tenants/<slug:tenant>/iot/credentials/revoke/", live.SignOutAppsView.as_view(),
         name="iot-credentials-revoke"),
    path("tenants/<slug:tenant>/devices/<int:device>/credentials/", api.DeviceCredentialsView.as_view(),
         name="device-credentials"),
    path("tenants/<slug:tenant>/devices/<int:device>/credentials/revoke/", live.DeviceCredentialsRevokeView.as_view(),
         name="device-credentials-revoke"),
    path("tenants/<slug:tenant>/devices/<int:device>/sessions/", live.DeviceSessionListView.as_view(),
         name="device-sessions"),
    path("tenants/<slug:tenant>/devices/<int:device>/sessions/<str:client_id>/", live.DeviceSessionView.as_view(),
         name="device-session"),
    path("tenants/<slug:tenant>/members/<int:user>/revoke-access/", live.MemberRevokeAccessView.as_view(),
         name="member-revoke-access"),
    path("tenants/<slug:tenant>/receipts/<int:pk>/", live.ReceiptDetailView.as_view(), name="receipt-detail"),
]
