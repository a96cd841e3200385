"""The versioned REST API: everything under /api/v1/ (namespace "api")."""
from django.urls import path, re_path

from authz import api as authz_api
from devices.api import urls as devices_urls
from devices.api.views import NotFoundView

app_name = "api"

urlpatterns = [
    *devices_urls.urlpatterns,
    path("tenants/<slug:tenant>/iot/credentials/", authz_api.UserCredentialsView.as_view(), name="iot-credentials"),
    path("tenants/<slug:tenant>/devices/<int:device>/credentials/", authz_api.DeviceCredentialsView.as_view(),
         name="device-credentials"),
    # Last: any other path under /api/v1/ gets a JSON 404 ([\s\S]: newlines too).
    re_path(r"^[\s\S]*$", NotFoundView.as_view(), name="not-found"),
]
