"""The versioned REST API: everything under /api/v1/ (namespace "api").

Each app keeps its own routes; this module only puts them under one namespace
and answers the rest.
"""
from django.urls import include, path, re_path

from config.api.views import NotFoundView

app_name = "api"

urlpatterns = [
    path("", include("devices.api.urls")),
    path("", include("authz.urls")),
    # Last: any other path under /api/v1/ gets a JSON 404 ([\s\S]: newlines too).
    re_path(r"^[\s\S]*$", NotFoundView.as_view(), name="not-found"),
]
