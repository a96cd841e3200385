"""The versioned REST API: everything under /api/v1/ (namespace "api")."""
from django.urls import re_path

from devices.api import urls as devices_urls
from devices.api.views import NotFoundView

app_name = "api"

urlpatterns = [
    *devices_urls.urlpatterns,
    # Last: any other path under /api/v1/ gets a JSON 404.
    re_path(r"^.*$", NotFoundView.as_view(), name="not-found"),
]
