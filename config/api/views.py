"""Base views every app's API builds on: scoped querysets, validation, the
tenant in the path, and the JSON 404 for paths no route matches.

A path under a tenant (``/tenants/{slug}/…``) resolves the tenant once, among
the caller's own; anything outside what the caller can see answers 404, so a
stranger cannot tell another tenant's objects from missing ones.
"""
from django.shortcuts import get_object_or_404
from rest_framework import generics
from rest_framework.exceptions import NotFound
from rest_framework.views import APIView

from devices import selectors
from devices.models import Device, DeviceGroup, Tenant


class ApiView(generics.GenericAPIView):
    """Shared plumbing: scoped querysets, validation, 404 on anything unseen."""

    model = None  # what an empty queryset is made of while the schema is generated

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return self.model.objects.none()
        return self.scoped_queryset()

    def scoped_queryset(self):
        raise NotImplementedError

    def get_object(self):
        # Unlike GenericAPIView's, query-string filters never hide the object.
        return get_object_or_404(self.get_queryset(), pk=self.kwargs["pk"])

    def validated(self, serializer_class, **kwargs) -> dict:
        serializer = serializer_class(data=self.request.data, context=self.get_serializer_context(), **kwargs)
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data


class TenantView(ApiView):
    """Resolves ``{tenant}`` among the caller's tenants; a stranger gets 404."""

    tenant: Tenant | None = None

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        self.tenant = get_object_or_404(selectors.tenants_for(request.user), slug=kwargs["tenant"])

    def visible_device(self, pk) -> Device:
        return get_object_or_404(selectors.devices_for(user=self.request.user, tenant=self.tenant), pk=pk)

    def visible_group(self, pk) -> DeviceGroup:
        return get_object_or_404(selectors.groups_for(user=self.request.user, tenant=self.tenant), pk=pk)


class NotFoundView(APIView):
    """Unknown API paths answer in the API's error shape, not Django's HTML page."""

    authentication_classes = []
    permission_classes = []
    schema = None

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        raise NotFound("No such API endpoint.")
