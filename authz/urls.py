"""authz's routes under /api/v1/ (included by config/api_router.py, namespace "api")."""
from django.urls import path

from . import api

urlpatterns = [
    path("tenants/<slug:tenant>/iot/credentials/", api.UserCredentialsView.as_view(), name="iot-credentials"),
    path("tenants/<slug:tenant>/devices/<int:device>/credentials/", api.DeviceCredentialsView.as_view(),
         name="device-credentials"),
]
